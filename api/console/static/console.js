// The review console: projects, sessions, a run live, and its review at a gate.
// Plain JavaScript, no build step and no CDN: everything is served by the API.
"use strict";

const TOKEN_KEY = "codexflow.token"; // kept for the browser session only
const ROLES = ["planner", "builder", "qa_qc", "prod_ready"];
let stream = null; // the open EventSource of the run shown, if any
let notice = ""; // what the last action did, shown once by the next view
let poller = null; // the list view's refresh timer

// --- mechanics --------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "on") Object.entries(value).forEach(([e, f]) => node.addEventListener(e, f));
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  let payload = body;
  if (body !== undefined && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const answer = await fetch(path, { method, headers, body: payload });
  if (answer.status === 401) { signOut("The API refused the token."); throw new Error("unauthorized"); }
  const type = answer.headers.get("content-type") || "";
  const data = type.includes("json") ? await answer.json() : await answer.text();
  if (!answer.ok) {
    const detail = typeof data === "string" ? data : data.detail;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return data;
}

async function download(path, name) {
  const answer = await fetch(path, { headers: { Authorization: `Bearer ${token()}` } });
  if (!answer.ok) throw new Error(`${answer.status} ${await answer.text()}`);
  const link = el("a", { href: URL.createObjectURL(await answer.blob()), download: name });
  link.click();
  URL.revokeObjectURL(link.href);
}

function show(...nodes) {
  const view = document.getElementById("view");
  view.replaceChildren(...nodes);
}

// A small markdown renderer (headings, lists, code blocks, inline code, paragraphs), built from
// text nodes only: what a model wrote can never become markup.
function markdown(text) {
  const root = el("div", { class: "markdown" });
  let list = null;
  let code = null;
  const inline = (line) => line.split(/(`[^`]+`)/).map((part) =>
    part.startsWith("`") && part.endsWith("`") && part.length > 1 ? el("code", {}, part.slice(1, -1)) : part);
  for (const line of text.split("\n")) {
    if (line.startsWith("```")) {
      if (code) { root.append(code); code = null; } else { code = el("pre"); list = null; }
      continue;
    }
    if (code) { code.append(line + "\n"); continue; }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    const item = line.match(/^\s*(?:[-*]|\d+\.)\s+(.*)$/);
    if (heading) { list = null; root.append(el(`h${Math.min(6, heading[1].length + 3)}`, {}, inline(heading[2]))); }
    else if (item) {
      if (!list) { list = el(/^\s*\d/.test(line) ? "ol" : "ul"); root.append(list); }
      list.append(el("li", {}, inline(item[1])));
    } else if (line.trim()) { list = null; root.append(el("p", {}, inline(line))); }
    else list = null;
  }
  if (code) root.append(code);
  return root;
}

function problem(err) { return el("p", { role: "alert", class: "error" }, err.message || String(err)); }

// --- sign-in ----------------------------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (stream) { stream.close(); stream = null; }
  document.getElementById("sign-out").hidden = true;
  document.getElementById("view").replaceChildren();
  document.getElementById("sign-in").hidden = false;
  document.getElementById("sign-in-error").textContent = message || "";
  document.getElementById("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const candidate = document.getElementById("token").value;
  // /api/projects needs the token: a 401 means it is wrong.
  const answer = await fetch("/api/projects/?limit=1", { headers: { Authorization: `Bearer ${candidate}` } });
  if (!answer.ok) {
    document.getElementById("sign-in-error").textContent =
      answer.status === 401 ? "The API refused the token." : `The API answered ${answer.status}.`;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  document.getElementById("token").value = "";
  document.getElementById("sign-in").hidden = true;
  document.getElementById("sign-out").hidden = false;
  route();
}

// --- projects ---------------------------------------------------------------------------------

async function projectsView() {
  const { projects } = await api("GET", "/api/projects/?limit=100");
  const rows = projects.map((p) => el("tr", {},
    el("td", {}, el("a", { href: `#/sessions?project=${p.id}` }, p.name)),
    el("td", {}, p.status + (p.error ? ` — ${p.error}` : "")),
    el("td", { class: "muted" }, p.id)));
  const status = el("p", { role: "status" });
  const form = el("form", { "aria-label": "new project", on: { submit: async (e) => {
    e.preventDefault();
    const data = new FormData(e.target);
    try {
      let made;
      if (data.get("archive") && data.get("archive").size) {
        const body = new FormData();
        body.append("name", data.get("name"));
        body.append("archive", data.get("archive"));
        made = await api("POST", "/api/projects/", body);
      } else {
        const body = { name: data.get("name") };
        if (data.get("url")) body.repository = { url: data.get("url"), ref: data.get("ref") || null };
        made = await api("POST", "/api/projects/", body);
      }
      notice = `Project ${made.name} is ${made.status}.`;
      route();
    } catch (err) { status.replaceChildren(problem(err)); }
  } } },
    el("h2", {}, "New project"),
    el("label", { for: "p-name" }, "Name"), el("input", { id: "p-name", name: "name", required: true }),
    el("label", { for: "p-url" }, "Repository URL or path (optional)"), el("input", { id: "p-url", name: "url" }),
    el("label", { for: "p-ref" }, "Ref (optional)"), el("input", { id: "p-ref", name: "ref" }),
    el("label", { for: "p-archive" }, "Or an archive (.tar.gz, .zip)"),
    el("input", { id: "p-archive", name: "archive", type: "file", accept: ".tar.gz,.tgz,.tar,.zip" }),
    el("button", { type: "submit" }, "Create project"), status);
  const said = el("p", { role: "status" }, notice);
  notice = "";
  show(el("h2", {}, "Projects"), said,
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "status"), el("th", {}, "id"))),
      el("tbody", {}, rows)), form);
  if (projects.some((p) => p.status === "importing")) setTimeout(() => location.hash === "#/" && route(), 2000);
}

// --- sessions ---------------------------------------------------------------------------------

async function sessionsView(params) {
  const project = params.get("project") || "";
  const wanted = params.get("status") || "";
  const query = new URLSearchParams({ limit: "100" });
  if (project) query.set("project_id", project);
  if (wanted) query.set("status", wanted);
  const [{ sessions }, { projects }] = await Promise.all([
    api("GET", `/api/sessions/?${query}`), api("GET", "/api/projects/?limit=100")]);
  const names = Object.fromEntries(projects.map((p) => [p.id, p.name]));
  const rowsOf = (list) => list.map((s) => el("tr", {},
    el("td", {}, el("a", { href: `#/session/${s.id}` }, s.title || s.user_request.slice(0, 60))),
    el("td", {}, names[s.project_id] || s.project_id),
    el("td", {}, s.status), el("td", {}, s.outcome || ""), el("td", {}, s.current_agent || "")));
  const body = el("tbody", {}, rowsOf(sessions));
  // The list stays current without a reload (the forms below are left as they are).
  poller = setInterval(async () => {
    try { body.replaceChildren(...rowsOf((await api("GET", `/api/sessions/?${query}`)).sessions)); } catch { /* next time */ }
  }, 3000);
  const filter = el("form", { "aria-label": "filter", on: { change: (e) => {
    const data = new FormData(e.currentTarget);
    location.hash = `#/sessions?${new URLSearchParams([...data].filter(([, v]) => v))}`;
  } } },
    el("label", { for: "f-project" }, "Project"),
    el("select", { id: "f-project", name: "project" }, el("option", { value: "" }, "all"),
      projects.map((p) => el("option", { value: p.id, selected: p.id === project }, p.name))),
    el("label", { for: "f-status" }, "Status"),
    el("select", { id: "f-status", name: "status" }, el("option", { value: "" }, "all"),
      ["pending", "queued", "running", "waiting_for_review", "completed", "failed", "cancelled"]
        .map((s) => el("option", { value: s, selected: s === wanted }, s))));
  const status = el("p", { role: "status" });
  const start = el("form", { "aria-label": "new session", on: { submit: async (e) => {
    e.preventDefault();
    const data = new FormData(e.target);
    const options = { gates: data.getAll("gates") };
    if (data.get("base_ref")) options.base_ref = data.get("base_ref");
    if (data.get("deliver") === "push") options.deliver = "push";
    if (data.get("budget")) options.token_budget = Number(data.get("budget"));
    try {
      const made = await api("POST", "/api/sessions/", {
        project_id: data.get("project"), user_request: data.get("request"), options, start: true });
      location.hash = `#/session/${made.id}`;
    } catch (err) { status.replaceChildren(problem(err)); }
  } } },
    el("h2", {}, "Start a session"),
    el("label", { for: "s-project" }, "Project"),
    el("select", { id: "s-project", name: "project", required: true },
      projects.filter((p) => p.status === "ready")
        .map((p) => el("option", { value: p.id, selected: p.id === project }, p.name))),
    el("label", { for: "s-request" }, "Request"), el("textarea", { id: "s-request", name: "request", required: true }),
    el("fieldset", {}, el("legend", {}, "Gates (stages that wait for your review)"),
      ROLES.map((r) => el("label", {}, el("input", { type: "checkbox", name: "gates", value: r }), ` ${r}`))),
    el("label", { for: "s-base" }, "Base ref (optional)"), el("input", { id: "s-base", name: "base_ref" }),
    el("label", { for: "s-deliver" }, "Delivery"),
    el("select", { id: "s-deliver", name: "deliver" }, el("option", { value: "none" }, "keep the branch here"),
      el("option", { value: "push" }, "push the branch when approved")),
    el("label", { for: "s-budget" }, "Token budget (optional)"),
    el("input", { id: "s-budget", name: "budget", type: "number", min: "1" }),
    el("button", { type: "submit" }, "Start"), status);
  show(el("h2", {}, "Sessions"), filter,
    el("table", {}, el("thead", {}, el("tr", {}, ["request", "project", "status", "outcome", "stage"].map((h) => el("th", {}, h)))),
      body), start);
}

// --- the diff, syntax-highlighted -------------------------------------------------------------

// Our own small highlighter: one regex tokenizer per language family, each rule a token class and
// a pattern (non-capturing groups only). The leftmost match wins, and at one position the rule
// listed first, so a "#" inside a string stays string. It reads one line at a time (a diff shows
// pieces of files): a multi-line string or comment is approximated per line — its first line is
// marked to the end (or to where it closes), the lines after it read as code. It builds text nodes
// and spans only, never markup: a file's content is hostile.
const KW = (words) => `\\b(?:${words.split(" ").join("|")})\\b`;
const STR = (quotes) => [...quotes].map((q) => `${q}(?:[^${q}\\\\]|\\\\.)*(?:${q}|$)`).join("|");
const NUM = String.raw`\b(?:0[xXbBoO][\da-fA-F_]+|\d[\d_]*(?:\.\d*)?(?:[eE][+-]?\d+)?)\b`;
const HASH_COMMENT = String.raw`(?:^|(?<=\s))#.*`; // shell, YAML, TOML: a "#" after a blank
const LANGUAGES = {
  python: [["com", "#.*"], ["str", `""".*?(?:"""|$)|'''.*?(?:'''|$)|${STR(`"'`)}`],
    ["kw", KW("and as assert async await break class continue def del elif else except False finally for from "
      + "global if import in is lambda match None nonlocal not or pass raise return self True try while with yield")],
    ["num", NUM]],
  js: [["com", String.raw`\/\/.*|\/\*.*?(?:\*\/|$)`], ["str", STR("\"'`")],
    ["kw", KW("as async await break case catch class const continue debugger default delete do else enum export "
      + "extends false finally for from function if implements import in instanceof interface let new null of "
      + "private protected public readonly return static super switch this throw true try type typeof undefined "
      + "var void while yield")],
    ["num", NUM]],
  json: [["kw", `(?:${STR('"')})(?=\\s*:)`], ["str", STR('"')], ["kw", KW("true false null")], ["num", `-?${NUM}`]],
  shell: [["com", HASH_COMMENT], ["str", STR(`"'`)],
    ["kw", KW("if then else elif fi for in do done case esac while until function return local export readonly "
      + "set unset shift exit source alias")],
    ["num", NUM]],
  config: [["com", HASH_COMMENT], ["str", STR(`"'`)], // YAML, TOML, INI: keys and [sections] as keywords
    ["kw", String.raw`^\s*\[\[?[^\]]*\]\]?|(?<=^\s*(?:-\s+)?)[\w.-]+(?=\s*[:=])|` + KW("true false null yes no on off")],
    ["num", NUM]],
  markdown: [["head", String.raw`^#{1,6}\s.*`], ["code", "^(?:```|~~~).*|`[^`]+`"],
    ["str", String.raw`\[[^\]]*\]\([^)\s]*\)`]],
  html: [["com", "<!--.*?(?:-->|$)"], ["kw", String.raw`<\/?[A-Za-z][\w:-]*|\/?>`],
    ["str", String.raw`(?<==\s*)(?:"[^"]*"?|'[^']*'?)`], ["num", String.raw`&(?:#\d+|#x[\da-fA-F]+|\w+);`]],
  css: [["com", String.raw`\/\*.*?(?:\*\/|$)`], ["str", STR(`"'`)],
    ["kw", String.raw`@[\w-]+|!important|(?<=^\s*|[{;]\s*)[\w-]+(?=\s*:[^{]*$)`],
    ["num", String.raw`#[\da-fA-F]{3,8}\b|-?(?:\b\d+(?:\.\d+)?|\.\d+)(?:%|[a-z]+)?`]],
};
const TOKENIZERS = Object.fromEntries(Object.entries(LANGUAGES).map(([language, rules]) => [language, {
  classes: rules.map(([name]) => `tok-${name}`),
  pattern: new RegExp(rules.map(([, source]) => `(${source})`).join("|"), "g"),
}]));
const EXTENSIONS = Object.fromEntries(Object.entries({
  python: "py pyi pyw", js: "js mjs cjs jsx ts tsx mts cts", json: "json jsonc", shell: "sh bash zsh ksh",
  markdown: "md markdown", config: "yml yaml toml ini cfg", html: "html htm xml svg", css: "css",
}).flatMap(([language, names]) => names.split(" ").map((ext) => [ext, language])));

// The language of a path, from its extension; null (plain text) when unknown.
function languageOf(path) {
  const base = String(path).split("/").pop().toLowerCase();
  if (base === "dockerfile") return "shell";
  const ext = base.includes(".") ? base.slice(base.lastIndexOf(".") + 1) : "";
  return Object.hasOwn(EXTENSIONS, ext) ? EXTENSIONS[ext] : null;
}

// One line of code as nodes: text nodes and <span class="tok-…"> holding text, nothing else.
function highlight(text, language) {
  const line = String(text);
  const tokenizer = Object.hasOwn(TOKENIZERS, language) ? TOKENIZERS[language] : null;
  if (!tokenizer || line.length > 2000) return [document.createTextNode(line)]; // a long line: plain
  const nodes = [];
  let at = 0;
  for (const match of line.matchAll(tokenizer.pattern)) {
    if (!match[0]) continue;
    if (match.index > at) nodes.push(document.createTextNode(line.slice(at, match.index)));
    const rule = match.findIndex((group, index) => index > 0 && group !== undefined) - 1;
    nodes.push(el("span", { class: tokenizer.classes[rule] }, match[0]));
    at = match.index + match[0].length;
  }
  if (at < line.length) nodes.push(document.createTextNode(line.slice(at)));
  return nodes;
}

// The diff per file: its header plain, its hunks' lines on their +/-/context background with
// their code highlighted in the file's language.
function diffView(text) {
  const files = text.split(/^(?=diff --git )/m).filter((part) => part.trim());
  if (!files.length) return el("p", { class: "muted" }, "No changes.");
  return files.map((file) => {
    const name = (file.match(/^diff --git a\/(\S+)/) || [, "changes"])[1];
    const language = languageOf(name);
    let inHunk = false; // past the file's header
    const lines = file.split("\n").map((line) => {
      if (line.startsWith("@@")) { inHunk = true; return el("span", { class: "hunk" }, line + "\n"); }
      const sign = line.charAt(0);
      const kind = !inHunk ? null : sign === "+" ? "add" : sign === "-" ? "del" : sign === " " ? "ctx" : null;
      if (!kind) return el("span", {}, line + "\n");
      return el("span", { class: kind }, el("span", { class: "sign" }, sign), highlight(line.slice(1), language), "\n");
    });
    return el("details", { open: true },
      el("summary", {}, name, language ? el("span", { class: "muted" }, ` (${language})`) : ""),
      el("pre", { class: "diff", "data-language": language || "plain" }, lines));
  });
}

window.codexflowConsole = Object.freeze({ highlight, languageOf, diffView }); // for the tests, and the curious

// --- one run ----------------------------------------------------------------------------------

async function sessionView(id) {
  const root = el("div");
  const terminals = el("div");
  const review = el("section", { "aria-label": "review" });
  const header = el("section", { "aria-label": "run" });
  const stages = el("section", { "aria-label": "stages" });
  root.append(header, review, stages, el("h3", {}, "Codex tasks"), terminals);
  show(root);
  let reviewing = null;
  let asked = 0; // refreshes started
  let drawn = 0; // the newest one drawn: an older one that answers late is dropped

  async function refresh() {
    const mine = ++asked;
    const [session, conversations] = await Promise.all([
      api("GET", `/api/sessions/${id}`), api("GET", `/api/sessions/${id}/conversations`)]);
    if (mine < drawn) return;
    drawn = mine;
    const live = session.live || {};
    const tokens = live.tokens_used ?? ((session.usage.model?.input_tokens || 0) + (session.usage.model?.output_tokens || 0));
    header.replaceChildren(
      el("h2", {}, session.title || "session"),
      el("p", {}, `Status: ${live.state || session.status}`, session.outcome ? ` · outcome: ${session.outcome}` : "",
        live.stage ? ` · stage: ${live.stage} #${live.iteration}` : "",
        ` · tokens: ${tokens}`, session.options.token_budget ? ` / ${session.options.token_budget}` : ""),
      session.error ? el("p", { class: "error" }, session.error) : "",
      session.temporal_ui_url ? el("p", {}, el("a", { href: session.temporal_ui_url, target: "_blank", rel: "noopener" }, "The run in the Temporal UI")) : "");
    const latest = {};
    conversations.forEach((c) => { latest[c.agent_type] = c; });
    stages.replaceChildren(el("h3", {}, "Stages"), el("div", { class: "stages" }, ROLES.map((role) => {
      const c = latest[role];
      return el("div", { class: "stage" }, el("h4", {}, role),
        c ? el("p", {}, `#${c.iteration} ${c.status}`, c.report?.verdict ? ` — ${c.report.verdict}` : "") : el("p", { class: "muted" }, "not yet"),
        c?.report?.summary ? el("p", {}, c.report.summary) : "");
    })), session.agents_md_content ? el("details", { open: true }, el("summary", {}, "AGENTS.md"), markdown(session.agents_md_content)) : "");
    if (session.status === "completed" && session.branch) {
      review.replaceChildren(el("h3", {}, "Delivered"),
        el("p", {}, `Branch ${session.branch}`, session.delivery ? ` (pushed as ${session.delivery.remote_branch || session.branch})` : ""),
        el("button", { type: "button", on: { click: () => download(`/api/sessions/${id}/patch`, `${id}.patch`) } }, "Download the patch"),
        el("button", { type: "button", on: { click: () => download(`/api/sessions/${id}/bundle`, `${id}.bundle`) } }, "Download the bundle"));
      reviewing = null;
    } else if (live.awaiting && reviewing !== `${live.awaiting.stage}:${live.iteration}`) {
      reviewing = `${live.awaiting.stage}:${live.iteration}`;
      try { await showReview(live.awaiting, live); } catch (err) { reviewing = null; throw err; } // the next refresh tries again
    } else if (!live.awaiting && reviewing) {
      reviewing = null;
      review.replaceChildren();
    }
  }

  async function showReview(awaiting, live) {
    const stage = awaiting.stage;
    const budget = awaiting.reason === "budget";
    const key = reviewing;
    const diff = budget ? "" : await api("GET", `/api/sessions/${id}/diff?stage=${stage}&iteration=${live.iteration}`);
    if (reviewing !== key) return; // decided meanwhile
    const answer = el("p", { role: "status" });
    const feedback = el("textarea", { id: "feedback", name: "feedback" });
    const decide = (decision) => async () => {
      try {
        await api("POST", `/api/sessions/${id}/review`, { stage, decision, feedback: feedback.value });
        answer.textContent = `Sent: ${decision}.`;
      } catch (err) { answer.replaceChildren(problem(err)); }
    };
    review.replaceChildren(el("h3", {}, budget ? "Budget reached" : `Review of ${stage}`),
      el("div", { class: "review" },
        el("div", {}, budget ? el("p", {}, "The run used its token budget.") : diffView(diff)),
        el("div", {},
          el("label", { for: "feedback" }, "Feedback"), feedback,
          el("button", { type: "button", on: { click: decide("approve") } }, budget ? "Continue" : "Approve"),
          budget ? "" : el("button", { type: "button", on: { click: decide("request_changes") } }, "Request changes"),
          el("button", { type: "button", on: { click: decide("reject") } }, "Reject"), answer)));
  }

  function terminal(taskId) {
    let node = document.getElementById(`t-${taskId}`);
    if (!node) {
      node = el("pre", { id: `t-${taskId}`, class: "terminal", "aria-label": `codex task ${taskId}` });
      terminals.append(el("h4", {}, taskId), node);
    }
    return node;
  }

  await refresh();
  if (stream) stream.close();
  // EventSource resumes after a reconnect from the last event id it saw (Last-Event-ID).
  stream = new EventSource(`/api/sessions/${id}/events?token=${encodeURIComponent(token())}`);
  let pending = null;
  let settle = null;
  stream.onmessage = () => {};
  const onEvent = (event) => {
    const data = JSON.parse(event.data);
    if (data.kind === "codex.event" && data.codex_task_id) {
      const line = data.payload.item?.text || data.payload.item?.command || data.payload.type || "";
      terminal(data.codex_task_id).append(`${line}\n`);
    }
    if (data.kind === "codex.stderr" && data.codex_task_id) {
      terminal(data.codex_task_id).append(el("span", { class: "stderr" }, `${data.payload.line}\n`));
    }
    if (!pending) pending = setTimeout(() => { pending = null; refresh().catch(() => {}); }, 300);
    // Once more after the last event: the API shares a session's answer for up to a second, so
    // the refresh above may read the state from before the event (and no event may follow).
    clearTimeout(settle);
    settle = setTimeout(() => refresh().catch(() => {}), 1200);
  };
  for (const kind of ["session.started", "stage.started", "stage.completed", "stage.failed", "review.awaited",
    "budget.paused", "review.received", "codex.started", "codex.event", "codex.stderr", "codex.finished", "session.moved",
    "session.finished", "session.failed", "session.cancelled"]) stream.addEventListener(kind, onEvent);
  stream.addEventListener("session.finished", () => { stream.close(); setTimeout(() => refresh(), 300); });
}

// --- routing ----------------------------------------------------------------------------------

async function route() {
  if (!token()) { signOut(); return; }
  if (stream) { stream.close(); stream = null; }
  if (poller) { clearInterval(poller); poller = null; }
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  try {
    if (path.startsWith("/session/")) await sessionView(path.slice("/session/".length));
    else if (path === "/sessions") await sessionsView(params);
    else await projectsView();
  } catch (err) {
    if (err.message !== "unauthorized") show(problem(err));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-in").addEventListener("submit", signIn);
  document.getElementById("sign-out").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", route);
  if (token()) {
    document.getElementById("sign-in").hidden = true;
    document.getElementById("sign-out").hidden = false;
  }
  route();
});
