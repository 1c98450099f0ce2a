"""What the scripted model does in ``codexflow demo``: codex writes a small program and runs it."""

from __future__ import annotations

from devkit.responses_server import Message, Patch, SequenceScript, ToolCall

__all__ = ["CODEX_DEMO_PROMPT", "codex_demo_script"]

CODEX_DEMO_PROMPT = "Create hello.py that greets the world, then run it to check it works."

_HELLO = """*** Begin Patch
*** Add File: hello.py
+def greet(name: str = "world") -> str:
+    return f"Hello, {name}!"
+
+
+if __name__ == "__main__":
+    print(greet())
*** End Patch
"""


def codex_demo_script() -> SequenceScript:
    return SequenceScript(
        [
            Patch(_HELLO),
            ToolCall("exec_command", {"cmd": "python3 hello.py"}),
            Message("Created hello.py; running it prints: Hello, world!"),
        ]
    )
