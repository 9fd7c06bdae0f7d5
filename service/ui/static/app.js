// taskgram explorer: plain JavaScript over the /v1 API (no framework, no build step).
"use strict";

const API = new URL("../v1", document.baseURI).href;
const state = {
  index: localStorage.getItem("taskgram.index") || "",
  key: localStorage.getItem("taskgram.key") || "",
  indexes: [],
  inflight: new Set(),
  seq: 0,
};

// ------------------------------------------------------------------------------------------------
// Small helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const fmt = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : n === null || n === undefined ? "—" : String(n));
const fmtf = (x, d = 3) => (x === null || x === undefined || x === "" ? "—" : Number(x).toFixed(d));
const pct = (x) => (100 * x).toFixed(1) + " %";
const main = () => document.getElementById("main");

// Replace an element's children (null / false / nested arrays allowed, as in h()).
function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

function stat(label, value, id) {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value", id }, value));
}

// Token strings of byte-level BPE vocabularies: show spaces and newlines.
function showToken(t) {
  if (t === null || t === undefined) return "(id)";
  return t.replace(/Ġ/g, "␣").replace(/Ċ/g, "↵").replace(/ĉ/g, "⇥");
}

// Text with [start, end, cls] marks (character offsets; marks may not overlap).
function marked(text, marks) {
  const out = [];
  let at = 0;
  for (const [s, e, cls] of [...marks].sort((a, b) => a[0] - b[0])) {
    if (s < at) continue;
    if (s > at) out.push(text.slice(at, s));
    out.push(h("mark", { class: cls || null }, text.slice(s, e)));
    at = e;
  }
  out.push(text.slice(at));
  return out;
}

// ------------------------------------------------------------------------------------------------
// API calls: bearer key, problem+json errors, spinner and cancel

class ApiError extends Error {}

function busy() {
  const n = state.inflight.size;
  document.getElementById("busy").hidden = n === 0;
}

async function api(method, path, body) {
  const controller = new AbortController();
  state.inflight.add(controller);
  busy();
  try {
    const headers = { Accept: "application/json, application/problem+json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (state.key) headers.Authorization = "Bearer " + state.key;
    const response = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal,
    });
    const type = response.headers.get("content-type") || "";
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      if (type.includes("json")) {
        const problem = await response.json();
        message = `${problem.title || "Error"} (${problem.status || response.status}): ${problem.detail || JSON.stringify(problem)}`;
      }
      throw new ApiError(message);
    }
    return type.includes("json") ? await response.json() : await response.blob();
  } catch (err) {
    if (err.name === "AbortError") throw new ApiError("Cancelled.");
    if (err instanceof ApiError) throw err;
    throw new ApiError(`Cannot reach the server: ${err.message}`);
  } finally {
    state.inflight.delete(controller);
    busy();
  }
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}

// Run an action; a newer action of the same page wins, errors go to the banner.
async function run(action) {
  showError("");
  const seq = ++state.seq;
  try {
    await action(() => seq === state.seq);
  } catch (err) {
    showError(err.message);
  }
}

const post = (path, body) => api("POST", path, { index: state.index, ...body });

// ------------------------------------------------------------------------------------------------
// Header: index picker, API key

async function loadIndexes() {
  const data = await api("GET", "/indexes");
  state.indexes = data.indexes;
  state.refused = data.refused || {};
  if (!state.indexes.some((i) => i.name === state.index)) state.index = state.indexes.length ? state.indexes[0].name : "";
  const select = document.getElementById("index-select");
  fill(select, ...state.indexes.map((i) => h("option", { value: i.name, selected: i.name === state.index }, i.name)));
}

function setIndex(name) {
  state.index = name;
  localStorage.setItem("taskgram.index", name);
  document.getElementById("index-select").value = name;
}

function setupHeader() {
  const keyInput = document.getElementById("api-key");
  const status = document.getElementById("key-status");
  status.textContent = state.key ? "key saved" : "";
  document.getElementById("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.key = keyInput.value.trim();
    keyInput.value = "";
    if (state.key) localStorage.setItem("taskgram.key", state.key);
    else localStorage.removeItem("taskgram.key");
    status.textContent = state.key ? "key saved" : "";
    route();
  });
  document.getElementById("forget-key").addEventListener("click", () => {
    state.key = "";
    localStorage.removeItem("taskgram.key");
    status.textContent = "key forgotten";
    route();
  });
  document.getElementById("index-select").addEventListener("change", (ev) => {
    setIndex(ev.target.value);
    route();
  });
  document.getElementById("cancel").addEventListener("click", () => {
    for (const c of state.inflight) c.abort();
  });
}

// ------------------------------------------------------------------------------------------------
// Page: indexes

async function pageIndexes() {
  const body = h("div");
  fill(main(), h("h1", {}, "Indexes"), h("p", { class: "hint" }, "The indexes this server serves. Pick one; the other pages query it."), body);
  await run(async () => {
    await loadIndexes();
    const rows = state.indexes.map((i) =>
      h(
        "tr",
        { class: i.name === state.index ? "current" : null, "data-index": i.name },
        h("td", {}, h("button", { type: "button", onclick: () => { setIndex(i.name); pageIndexes(); } }, i.name === state.index ? "In use" : "Use")),
        h("td", {}, h("strong", {}, i.name)),
        h("td", { class: "num", "data-field": "n_tokens" }, fmt(i.n_tokens)),
        h("td", { class: "num", "data-field": "n_docs" }, fmt(i.n_docs)),
        h("td", { class: "num" }, fmt(i.n_shards)),
        h("td", {}, i.token_dtype),
        h("td", {}, `${i.tokenizer.name || i.tokenizer.kind} (${fmt(i.vocab_size)} tokens)`),
        h("td", {}, i.normalization),
        h("td", {}, (i.created_at || "").replace("T", " ").slice(0, 19)),
        h("td", {}, (i.inputs || []).map((x) => x.path.split("/").pop()).join(", ")),
      ),
    );
    const head = h("tr", {}, ["", "name", "tokens", "documents", "shards", "token type", "tokenizer", "normalization", "built", "inputs"].map((c, k) => h("th", { class: k >= 2 && k <= 4 ? "num" : null, scope: "col" }, c)));
    fill(body, h("table", { id: "index-table" }, h("thead", {}, head), h("tbody", {}, rows)));
    const refused = Object.entries(state.refused || {});
    if (refused.length) body.append(h("h2", {}, "Refused"), h("ul", {}, refused.map(([n, why]) => h("li", {}, `${n}: ${why}`))));
  });
}

// ------------------------------------------------------------------------------------------------
// Page: phrase search

function documentCard(doc, markClass) {
  const meta = Object.entries(doc.metadata || {}).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ");
  const text = doc.text === null || doc.text === undefined ? doc.token_ids.join(" ") : doc.text;
  const marks = (doc.spans || []).map(([s, e, p]) => [s, e, markClass ? markClass(p) : null]);
  return h(
    "article",
    { class: "doc", "data-doc-id": doc.doc_id },
    h("div", { class: "meta" }, `document #${fmt(doc.doc_id)} · shard ${doc.shard} · ${fmt(doc.doc_len)} tokens`, meta ? ` · ${meta}` : ""),
    h("div", { class: "text" }, doc.text === null || doc.text === undefined ? text : marked(text, marks)),
  );
}

function pageSearch() {
  const input = h("input", { type: "text", id: "phrase", name: "phrase", placeholder: "a phrase, e.g. the garbage collector", required: true, "aria-label": "Phrase" });
  const results = h("div", { id: "search-results" });
  let offset = 0;
  const limit = 10;

  async function search(newOffset) {
    offset = newOffset;
    const phrase = input.value;
    if (!phrase.trim()) return;
    await run(async (current) => {
      const [count, df, ntd, docs] = await Promise.all([
        post("/count", { queries: [phrase] }),
        post("/doc_freq", { queries: [phrase] }),
        post("/ntd", { queries: [phrase], top_k: 20 }),
        post("/documents", { queries: [[phrase]], offset, limit, window: 60 }),
      ]);
      if (!current()) return;
      const dist = ntd.results[0];
      const page = docs.results[0];
      const top = dist.tokens.length ? dist.tokens[0].count : 1;
      const chart = h(
        "div",
        { class: "chart", id: "ntd-chart", role: "list" },
        dist.tokens.map((t) => [
          h("div", { class: "tok", role: "listitem" }, showToken(t.token)),
          h("div", { class: "track" }, h("div", { class: "fill", style: `width:${(100 * t.count) / top}%` })),
          h("div", { class: "n", "data-count": t.count }, `${fmt(t.count)} (${pct(t.prob)})`),
        ]),
      );
      const last = Math.min(offset + page.docs.length, page.total);
      const pager = h(
        "div",
        { class: "pager" },
        h("button", { type: "button", id: "prev-page", disabled: offset === 0, onclick: () => search(Math.max(0, offset - limit)) }, "← Previous"),
        h("span", { id: "page-info" }, page.total ? `documents ${fmt(offset + 1)}–${fmt(last)} of ${fmt(page.total)}` : "no documents"),
        h("button", { type: "button", id: "next-page", disabled: last >= page.total, onclick: () => search(offset + limit) }, "Next →"),
      );
      fill(results,
        h("div", { class: "stats" }, stat("occurrences", fmt(count.results[0]), "count"), stat("documents", fmt(df.results[0]), "doc-freq"), stat("distinct next tokens", fmt(dist.n_distinct), "n-distinct")),
        h("h2", {}, "Next-token distribution (top 20)"),
        dist.tokens.length ? chart : h("p", { class: "empty" }, "The phrase never continues (or never occurs)."),
        dist.ends_of_document ? h("p", { class: "hint" }, `${fmt(dist.ends_of_document)} occurrences end a document.`) : null,
        h("h2", {}, "Documents"),
        pager,
        h("div", { id: "documents" }, page.docs.map((d) => documentCard(d))),
      );
    });
  }

  const form = h(
    "form",
    { class: "query", onsubmit: (ev) => { ev.preventDefault(); search(0); } },
    h("label", { class: "grow" }, "Phrase (text, tokenized by the index's tokenizer)", input),
    h("button", { type: "submit", class: "primary" }, "Search"),
  );
  fill(main(), h("h1", {}, "Phrase search"), h("p", { class: "hint" }, "Exact occurrence count, document frequency, the next-token distribution and the documents."), form, results);
  input.focus();
}

// ------------------------------------------------------------------------------------------------
// Page: co-occurrence

function parseSpec(value) {
  const variants = value.split("|").map((v) => v.trim()).filter(Boolean);
  if (!variants.length) return null;
  return variants.length === 1 ? variants[0] : { any: variants };
}

function pageCooccurrence() {
  const rows = h("div", { id: "phrase-rows" });
  const results = h("div", { id: "cooc-results" });
  const windowInput = h("input", { type: "number", id: "window", min: 1, value: 50, "aria-label": "Window in tokens" });

  function addRow(value) {
    const n = rows.children.length + 1;
    const input = h("input", { type: "text", class: "phrase-input", value: value || "", "aria-label": `Phrase ${n}`, placeholder: "phrase, or variants separated by |" });
    const remove = h("button", { type: "button", "aria-label": `Remove phrase ${n}`, onclick: () => { if (rows.children.length > 2) row.remove(); } }, "Remove");
    const row = h("div", { class: "phrase-row" }, h("span", {}, `${n}.`), input, remove);
    rows.append(row);
    return input;
  }

  async function query() {
    const specs = [...rows.querySelectorAll("input")].map((i) => parseSpec(i.value)).filter(Boolean);
    if (specs.length < 2) {
      showError("Give at least two phrases.");
      return;
    }
    const window = Number(windowInput.value);
    await run(async (current) => {
      const [docs, windowed, examples] = await Promise.all([
        post("/cooccurrence", { queries: [specs] }),
        post("/cooccurrence/windowed", { queries: [specs], window }),
        post("/documents", { queries: [specs], limit: 5, window: 40 }),
      ]);
      if (!current()) return;
      const page = examples.results[0];
      fill(results,
        h("div", { class: "stats" }, stat("documents with all phrases", fmt(docs.results[0]), "cooc-docs"), stat(`phrase 1 with all others within ${fmt(window)} tokens`, fmt(windowed.results[0]), "cooc-windowed")),
        h("h2", {}, `Example documents (${fmt(page.docs.length)} of ${fmt(page.total)})`),
        h("div", { class: "legend" }, specs.map((s, k) => h("span", {}, h("mark", { class: k % 4 ? `p${k % 4}` : null }, `phrase ${k + 1}`)))),
        h("div", { id: "cooc-documents" }, page.docs.map((d) => documentCard(d, (p) => (p % 4 ? `p${p % 4}` : null)))),
      );
    });
  }

  const form = h(
    "form",
    { class: "query", onsubmit: (ev) => { ev.preventDefault(); query(); } },
    h("div", { class: "grow" }, rows, h("button", { type: "button", id: "add-phrase", onclick: () => addRow("").focus() }, "+ Add phrase")),
    h("label", {}, "Window (tokens)", windowInput),
    h("button", { type: "submit", class: "primary" }, "Count"),
  );
  fill(main(),
    h("h1", {}, "Co-occurrence"),
    h("p", { class: "hint" }, "Documents containing every phrase, and occurrences of the first phrase with all others nearby. Write OR variants as  Paris | paris."),
    form,
    results,
  );
  addRow("").focus();
  addRow("");
}

// ------------------------------------------------------------------------------------------------
// Page: trace

function countClass(count) {
  if (count <= 1) return "c1";
  if (count <= 10) return "c2";
  if (count <= 100) return "c3";
  return "c4";
}

function pageTrace() {
  const text = h("textarea", { id: "trace-text", "aria-label": "Text to trace", placeholder: "Paste a model's output here." });
  const minLen = h("input", { type: "number", id: "min-len", min: 1, value: 2, "aria-label": "Shortest span (tokens)" });
  const maxCount = h("input", { type: "number", id: "max-count", min: 0, value: 10, "aria-label": "Most occurrences (0 = any)" });
  const boundary = h("select", { id: "boundary", "aria-label": "Span edges" }, h("option", { value: "word" }, "word boundaries"), h("option", { value: "token" }, "any token"));
  const results = h("div", { id: "trace-results" });

  function showSpan(result, span, container) {
    for (const el of results.querySelectorAll(".hl.selected")) el.classList.remove("selected");
    for (const el of results.querySelectorAll(`.hl[data-spans~="${span.rank}"]`)) el.classList.add("selected");
    fill(container,
      h("h2", { id: "span-title" }, `“${span.text}” — ${fmt(span.count)} occurrence${span.count === 1 ? "" : "s"}, ${span.length} tokens`),
      span.documents.length < span.count ? h("p", { class: "hint" }, `A seeded sample of ${span.documents.length} of the ${fmt(span.count)} occurrences.`) : null,
      h("div", { id: "span-documents" }, span.documents.map((d) => documentCard({ ...d, spans: [[d.span[0], d.span[1], 0]] }))),
    );
  }

  async function trace() {
    if (!text.value.trim()) return;
    await run(async (current) => {
      const answer = await post("/trace", {
        queries: [text.value],
        min_len: Number(minLen.value) || 1,
        max_count: Number(maxCount.value) || null,
        boundary: boundary.value,
        docs_per_span: 10,
        context: 60,
      });
      if (!current()) return;
      const result = answer.results[0];
      const docs = h("div", { id: "span-panel" });
      // segments between every span edge; a segment is coloured by its rarest covering span
      const edges = new Set([0, result.text.length]);
      for (const s of result.spans) { edges.add(s.char_start); edges.add(s.char_end); }
      const cuts = [...edges].sort((a, b) => a - b);
      const pieces = [];
      for (let k = 0; k + 1 < cuts.length; k++) {
        const [a, b] = [cuts[k], cuts[k + 1]];
        const covering = result.spans.filter((s) => s.char_start <= a && b <= s.char_end);
        const piece = result.text.slice(a, b);
        if (!covering.length) { pieces.push(piece); continue; }
        const rarest = Math.min(...covering.map((s) => s.count));
        const longest = covering.reduce((x, y) => (y.length > x.length ? y : x));
        const activate = () => showSpan(result, longest, docs);
        pieces.push(h("span", {
          class: `hl ${countClass(rarest)}`, tabindex: 0, role: "button", "data-spans": covering.map((s) => s.rank).join(" "),
          title: `${fmt(longest.count)} occurrences · ${longest.length} tokens`,
          onclick: activate, onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); activate(); } },
        }, piece));
      }
      const table = h(
        "table",
        { id: "span-table" },
        h("thead", {}, h("tr", {}, ["rank", "tokens", "occurrences", "span", ""].map((c, k) => h("th", { class: k && k < 3 ? "num" : null, scope: "col" }, c)))),
        h("tbody", {}, [...result.spans].sort((x, y) => x.rank - y.rank).map((s) => h(
          "tr", { "data-rank": s.rank },
          h("td", {}, s.rank), h("td", { class: "num" }, s.length), h("td", { class: "num", "data-count": s.count }, fmt(s.count)),
          h("td", {}, h("span", { class: countClass(s.count) }, s.text)),
          h("td", {}, h("button", { type: "button", onclick: () => showSpan(result, s, docs) }, "Documents")),
        ))),
      );
      fill(results,
        h("div", { class: "stats" },
          stat("spans", fmt(result.spans.length), "span-count"), stat("tokens", fmt(result.n_tokens), "token-count"),
          stat("span density (spans/token)", fmtf(result.span_density), "span-density"), stat("coverage", pct(result.coverage), "coverage"),
          stat("longest span (tokens)", fmt(result.longest), "longest")),
        h("div", { class: "legend" }, "Found in the corpus:",
          [["c1", "once"], ["c2", "2–10 times"], ["c3", "11–100 times"], ["c4", "more"]].map(([c, label]) => h("span", {}, h("span", { class: `sw ${c}` }), label)),
          h("span", { class: "hint" }, "Click a highlighted span (or Tab to it and press Enter) for its documents.")),
        h("div", { class: "traced", id: "traced-text" }, pieces),
        docs,
        h("h2", {}, "Spans"),
        result.spans.length ? table : h("p", { class: "empty" }, "No span of the text occurs in the corpus under these settings."),
      );
    });
  }

  const form = h(
    "form",
    { class: "query", onsubmit: (ev) => { ev.preventDefault(); trace(); } },
    h("label", { class: "grow" }, "Text (e.g. a model's output)", text),
    h("label", {}, "Shortest span (tokens)", minLen),
    h("label", {}, "Most occurrences (0 = any)", maxCount),
    h("label", {}, "Span edges", boundary),
    h("button", { type: "submit", class: "primary", id: "trace-button" }, "Trace"),
  );
  text.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); trace(); } });
  fill(main(),
    h("h1", {}, "Trace"),
    h("p", { class: "hint" }, "The maximal spans of a text that occur verbatim in the corpus, with exact counts (Ctrl+Enter traces)."),
    form,
    results,
  );
  text.focus();
}

// ------------------------------------------------------------------------------------------------
// Page: evaluation runs

function csvTable(id, rows, columns, numeric) {
  return h("table", { id },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: numeric.has(c) ? "num" : null, scope: "col" }, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => {
      const v = r[c];
      const shown = typeof v === "number" && !Number.isInteger(v) ? fmtf(v) : v === null || v === undefined || v === "" ? "—" : fmt(v);
      return h("td", { class: numeric.has(c) ? "num" : null }, shown);
    })))));
}

async function showRun(name, container) {
  await run(async (current) => {
    const data = await api("GET", `/runs/${encodeURIComponent(name)}`);
    if (!current()) return;
    const report = data.report;
    const mem = report.memorization || [];
    const memColumns = ["task", "n", "pairs_filter", "gamma", "model", "scorer", "pairs", "items", "spearman_rho", "spearman_p", "kendall_tau", "kendall_p", "note"];
    const memNumeric = new Set(["n", "gamma", "pairs", "items", "spearman_rho", "spearman_p", "kendall_tau", "kendall_p"]);
    const num = (v) => (v === "" || v === null || v === undefined ? null : Number(v));
    const bins = data.performance_bins.map((r) => ({
      ...r, n: num(r.n), bin_lo: num(r.bin_lo), bin_hi: num(r.bin_hi), examples: num(r.examples), mean_metric: num(r.mean_metric),
    }));
    const binColumns = ["task", "n", "pairs_filter", "model", "metric", "bin_lo", "bin_hi", "examples", "mean_metric"];
    const figures = h("div", { class: "figures", id: "figures" });
    fill(container,
      h("h2", {}, `Run ${name}`),
      h("p", {}, "Status: ", h("span", { class: report.ok ? "ok" : "bad" }, report.ok ? "complete" : "with errors"),
        ` · models: ${Object.values(report.models || {}).join(", ") || "—"} · tasks: ${(report.config?.tasks || []).join(", ")} · n = ${(report.config?.n_values || []).join(", ")}`),
      h("h2", {}, `Memorization (${mem.length} rows)`),
      mem.length ? h("div", { class: "scroll" }, csvTable("memorization-table", mem, memColumns, memNumeric)) : h("p", { class: "empty" }, "No memorization rows."),
      h("h2", {}, `Performance bins (${bins.length} rows)`),
      bins.length ? h("div", { class: "scroll" }, csvTable("bins-table", bins, binColumns, new Set(["n", "bin_lo", "bin_hi", "examples", "mean_metric"]))) : h("p", { class: "empty" }, "No performance bins."),
      h("h2", {}, "Figures"),
      data.figures.length ? figures : h("p", { class: "empty" }, "No figures."),
      h("h2", {}, "Errors"),
      (report.errors || []).length
        ? h("ul", { id: "run-errors" }, report.errors.map((e) => h("li", {}, `${e.stage || ""}: ${e.error || JSON.stringify(e)}`)))
        : h("p", { class: "empty", id: "run-errors" }, "No errors."),
    );
    for (const fig of data.figures) {
      const blob = await api("GET", `/runs/${encodeURIComponent(name)}/figures/${encodeURIComponent(fig)}`);
      if (!current()) return;
      figures.append(h("figure", {}, h("img", { src: URL.createObjectURL(blob), alt: `figure ${fig}` }), h("figcaption", {}, fig)));
    }
  });
}

async function pageRuns() {
  const list = h("div");
  const detail = h("div", { id: "run-detail" });
  fill(main(), h("h1", {}, "Evaluation runs"), h("p", { class: "hint" }, "Runs of taskgram eval this server was started with (taskgram serve --eval-run DIR)."), list, detail);
  await run(async () => {
    const data = await api("GET", "/runs");
    if (!data.runs.length) {
      fill(list, h("p", { class: "empty" }, "This server shows no evaluation runs. Start it with --eval-run RUN_DIR."));
      return;
    }
    fill(list, h("table", { id: "runs-table" },
      h("thead", {}, h("tr", {}, ["run", "status", "models", "tasks", "errors"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, data.runs.map((r) => h("tr", {},
        h("td", {}, h("button", { type: "button", "data-run": r.name, onclick: () => showRun(r.name, detail) }, r.name)),
        h("td", {}, r.has_report ? (r.ok ? "complete" : "with errors") : "no report yet"),
        h("td", {}, Object.values(r.models || {}).join(", ")),
        h("td", {}, (r.tasks || []).join(", ")),
        h("td", { class: "num" }, r.has_report ? fmt(r.errors) : "—"))))));
  });
}

// ------------------------------------------------------------------------------------------------
// Routing

const PAGES = { "": pageIndexes, search: pageSearch, cooccurrence: pageCooccurrence, trace: pageTrace, runs: pageRuns };

async function route() {
  const page = (location.hash.replace(/^#\/?/, "").split("?")[0]) || "";
  for (const a of document.querySelectorAll("nav a")) {
    const target = a.getAttribute("href").replace(/^#\/?/, "");
    if (target === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  showError("");
  if (!state.indexes.length && page !== "") {
    try { await loadIndexes(); } catch (err) { showError(err.message); }
  }
  (PAGES[page] || pageIndexes)();
}

setupHeader();
window.addEventListener("hashchange", route);
route();
