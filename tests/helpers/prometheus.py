"""Reading Prometheus text as the Prometheus server stores it: sample names exactly as exposed.

(``prometheus_client``'s parser is not used: it renames counter samples to ``*_total``, which the
Temporal SDK's counters are not called.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Sample", "Scrape"]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class Scrape:
    """One scrape: ``value(name, **labels)`` sums the samples of ``name`` whose labels match."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[Sample] = []
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            match = _SAMPLE.match(line.strip())
            assert match, f"not a Prometheus sample line: {line!r}"
            name, labels, value = match.groups()
            self.samples.append(Sample(name, dict(_LABEL.findall(labels or "")), float(value)))

    def value(self, name: str, **labels: str) -> float:
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def names(self) -> set[str]:
        return {s.name for s in self.samples}

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}
