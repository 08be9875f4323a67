// The rules console: a form per rule kind drawn from the rules' JSON Schema, a YAML view, validation
// as you type (the service's own check, through /console/api/validate), preview, publish, history.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  schema: null,      // the rules file's JSON Schema
  kinds: [],         // rule kinds, from the schema's discriminator
  live: null,        // {version, yaml, document, in_force}
  draft: { yaml: "", document: null, base: null },
  view: "form",
  valid: false,
  seq: 0,            // validation requests sent; answers to older ones are dropped
  timer: null,
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

async function api(path, body) {
  const init = { credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch("/console/api/" + path, init);
  let data = null;
  try { data = await response.json(); } catch (e) { data = { detail: response.statusText }; }
  if (response.status === 401) $("live-status").textContent = "Not logged in: reload the page.";
  return { status: response.status, data };
}

function detailText(data) {
  const d = data && data.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => e.message || e.msg || JSON.stringify(e)).join("; ");
  return JSON.stringify(data);
}

// ---- the schema: which fields a kind has and how each is edited -------------------------------

function kindDef(kind) {
  const mapping = state.schema.properties.rules.items.discriminator.mapping;
  const ref = mapping[kind];
  return ref ? state.schema.$defs[ref.split("/").pop()] : null;
}

function fieldKind(prop) {
  if (prop.type === "boolean") return "bool";
  if (prop.type === "integer") return "int";
  if (prop.type === "number") return "number";
  if (prop.type === "array") return prop.items && prop.items.type === "integer" ? "int-list" : "text-list";
  if (prop.anyOf) return "time";
  return "text";
}

function constraint(prop) {
  const parts = [];
  const p = prop.items && prop.type === "array" ? prop.items : prop;
  if (p.exclusiveMinimum !== undefined) parts.push("> " + p.exclusiveMinimum);
  if (p.minimum !== undefined) parts.push(">= " + p.minimum);
  if (p.exclusiveMaximum !== undefined) parts.push("< " + p.exclusiveMaximum);
  if (p.maximum !== undefined) parts.push("<= " + p.maximum);
  if (prop.minItems) parts.push("at least " + prop.minItems);
  if (prop.anyOf) parts.push("ISO 8601 time or epoch seconds");
  if (prop.description) parts.push(plain(prop.description));
  return parts.join(", ");
}

function plain(doc) { return (doc || "").replace(/``/g, ""); }  // the models' docstrings are reST

function orderedFields(def) {
  const names = Object.keys(def.properties).filter((n) => n !== "type");
  const first = ["name", "enabled"];
  return first.filter((n) => names.includes(n)).concat(names.filter((n) => !first.includes(n)));
}

function shown(value, kind) {
  if (value === undefined || value === null) return "";
  if (Array.isArray(value)) return value.join(", ");
  return String(value);
}

function numeric(text, integer) {
  const pattern = integer ? /^-?\d+$/ : /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;
  return pattern.test(text) ? Number(text) : text;  // kept as text: the server names what is wrong
}

function readField(input, kind) {
  if (kind === "bool") return input.checked;
  const text = input.value.trim();
  if (kind === "text-list" || kind === "int-list") {
    const parts = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
    return kind === "int-list" ? parts.map((s) => numeric(s, true)) : parts;
  }
  if (text === "") return undefined;
  if (kind === "int") return numeric(text, true);
  if (kind === "number" || kind === "time") return numeric(text, false);
  return text;
}

// ---- the form -----------------------------------------------------------------------------------

function renderForm() {
  const box = $("rules-form");
  box.textContent = "";
  const doc = state.draft.document;
  if (!doc || !Array.isArray(doc.rules)) {
    box.append(el("p", { class: "hint", id: "form-unavailable",
      text: "The draft's YAML does not give a 'rules' list the form can show: fix it in the YAML view." }));
    return;
  }
  doc.rules.forEach((rule, index) => box.append(ruleCard(rule, index)));
}

function ruleCard(rule, index) {
  const kind = rule && typeof rule === "object" ? rule.type : undefined;
  const def = typeof kind === "string" ? kindDef(kind) : null;
  const card = el("fieldset", { class: "rule-card", "data-index": index, "data-loc": `rules[${index}]` });
  const select = el("select", { name: "type", "data-loc": `rules[${index}].type`, "aria-label": "kind" });
  for (const k of state.kinds) select.append(el("option", { value: k, text: k, selected: k === kind }));
  if (!def) select.append(el("option", { value: String(kind), text: `(unknown: ${kind})`, selected: true }));
  select.addEventListener("change", () => {
    const current = collectRules();
    const name = current[index].name || "";
    const generated = name === `${kind}-${name.split("-").pop()}` && /^\d+$/.test(name.split("-").pop());
    const renamed = generated ? `${select.value}-${name.split("-").pop()}` : name;  // as addRule names it
    current[index] = { name: renamed || undefined, type: select.value };
    setDocument({ ...state.draft.document, rules: current }, true);
  });
  const remove = el("button", { type: "button", class: "remove-rule", text: "Remove", onclick: () => {
    const current = collectRules();
    current.splice(index, 1);
    setDocument({ ...state.draft.document, rules: current }, true);
  } });
  card.append(el("div", { class: "head" }, el("strong", { text: `#${index}` }), select,
    el("span", { class: "kind-doc", text: def ? plain(def.description) : "" }), remove));
  if (!def) {
    card.append(el("p", { class: "hint", text: "Unknown kind: pick one above or fix it in the YAML view." }));
    card.dataset.raw = JSON.stringify(rule);
    return card;
  }
  for (const field of orderedFields(def)) {
    const prop = def.properties[field];
    const kindOf = fieldKind(prop);
    const loc = `rules[${index}].${field}`;
    const attrs = { name: field, "data-loc": loc, "data-kind": kindOf, id: `rule-${index}-${field}` };
    let input;
    if (kindOf === "bool") {
      input = el("input", { ...attrs, type: "checkbox", checked: rule[field] === undefined ? prop.default !== false : !!rule[field] });
    } else {
      input = el("input", { ...attrs, type: "text", value: shown(rule[field], kindOf) });
    }
    input.addEventListener(kindOf === "bool" ? "change" : "input", () => formChanged());
    const required = (def.required || []).includes(field);
    card.append(el("div", { class: "field" },
      el("label", { for: attrs.id, text: field + (required ? " *" : "") }), input,
      el("span", { class: "constraint", text: constraint(prop) })));
  }
  const known = new Set(Object.keys(def.properties));
  const extra = Object.keys(rule).filter((k) => !known.has(k));
  if (extra.length) {
    card.dataset.extra = JSON.stringify(Object.fromEntries(extra.map((k) => [k, rule[k]])));
    card.append(el("p", { class: "hint", text: `Fields this kind does not have: ${extra.join(", ")} (remove them in the YAML view).` }));
  }
  return card;
}

function collectRules() {
  const rules = [];
  for (const card of document.querySelectorAll("#rules-form .rule-card")) {
    if (card.dataset.raw) { rules.push(JSON.parse(card.dataset.raw)); continue; }
    const rule = {};
    for (const input of card.querySelectorAll("[data-kind]")) {
      const value = readField(input, input.dataset.kind);
      if (input.name === "enabled") { if (value === false) rule.enabled = false; continue; }
      if (Array.isArray(value) && value.length === 0) continue;
      if (value !== undefined) rule[input.name] = value;
    }
    const ordered = { name: rule.name, type: card.querySelector("select[name=type]").value };
    Object.assign(ordered, rule, card.dataset.extra ? JSON.parse(card.dataset.extra) : {});
    if (ordered.name === undefined) delete ordered.name;
    rules.push(ordered);
  }
  return rules;
}

function formChanged() {
  state.draft.document = { ...(state.draft.document || { version: 1 }), rules: collectRules() };
  scheduleValidation();
}

function setDocument(doc, rerender) {
  state.draft.document = doc;
  if (rerender) renderForm();
  scheduleValidation();
}

function addRule() {
  const kind = $("add-kind").value;
  const rules = state.draft.document && Array.isArray(state.draft.document.rules) ? collectRules() : [];
  let n = rules.length + 1;
  const names = new Set(rules.map((r) => r.name));
  while (names.has(`${kind}-${n}`)) n += 1;
  rules.push({ name: `${kind}-${n}`, type: kind });
  setDocument({ ...(state.draft.document || { version: 1 }), rules }, true);
}

// ---- validation ---------------------------------------------------------------------------------

function scheduleValidation() {
  clearTimeout(state.timer);
  $("validity").className = "";
  $("validity").textContent = "Checking…";
  state.valid = false;
  state.timer = setTimeout(validateNow, 250);
}

async function validateNow() {
  clearTimeout(state.timer);
  const seq = ++state.seq;
  const fromForm = state.view === "form" && state.draft.document;
  const body = fromForm ? { document: state.draft.document } : { yaml: $("yaml-text").value };
  const { status, data } = await api("validate", body);
  if (seq !== state.seq) return null;  // a newer edit is being checked
  if (status !== 200) { showProblems([{ message: detailText(data), locations: [], lines: [] }]); return null; }
  state.draft.yaml = data.yaml;
  if (fromForm) {
    if (document.activeElement !== $("yaml-text")) $("yaml-text").value = data.yaml;
  } else {
    state.draft.document = data.document;
  }
  state.valid = data.ok;
  showProblems(data.errors);
  $("validity").className = data.ok ? "ok" : "bad";
  $("validity").textContent = data.ok
    ? `Valid: ${data.enabled_rules} enabled rules, version ${data.digest}`
    : "Invalid: the service would refuse this draft";
  markDirty();
  return data;
}

function showProblems(problems) {
  const list = $("errors");
  list.textContent = "";
  for (const node of document.querySelectorAll(".invalid")) node.classList.remove("invalid");
  for (const node of document.querySelectorAll(".field-error")) node.remove();
  for (const problem of problems || []) {
    const item = el("li", { class: "error", text: problem.message });
    (problem.lines || []).forEach((line, i) => {
      if (line) item.append(" ", el("a", { text: `line ${line}`, onclick: () => gotoLine(line) }));
      markLocation(problem.locations[i], problem.message);
    });
    list.append(item);
  }
}

function markLocation(loc, message) {
  if (!loc) return;
  let target = loc;
  while (target) {
    const node = document.querySelector(`#rules-form [data-loc="${CSS.escape(target)}"]`);
    if (node) {
      node.classList.add("invalid");
      const card = node.closest(".rule-card");
      if (card) card.classList.add("invalid");
      const field = node.closest(".field");
      if (field) field.append(el("span", { class: "field-error", text: `${loc}: ${message.split("(at")[0].split(": ").pop()}` }));
      return;
    }
    const parent = target.replace(/(\[\d+\]|\.[^.\[\]]+)$/, "");
    if (parent === target) return;  // "rules": nothing above it in the form
    target = parent;
  }
}

function gotoLine(line) {
  showView("yaml");
  const area = $("yaml-text");
  const lines = area.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  area.focus();
  area.setSelectionRange(start, start + (lines[line - 1] || "").length);
}

function markDirty() {
  const changed = state.live && state.draft.yaml !== state.live.yaml;
  $("draft-dirty").textContent = changed ? "· unpublished changes" : "· same as live";
}

// ---- views --------------------------------------------------------------------------------------

function showView(view) {
  if (view === state.view) return;
  state.view = view;
  $("tab-form").classList.toggle("active", view === "form");
  $("tab-yaml").classList.toggle("active", view === "yaml");
  $("form-view").hidden = view !== "form";
  $("yaml-view").hidden = view !== "yaml";
  if (view === "form") { renderForm(); validateNow(); }
  else $("yaml-text").value = state.draft.yaml;
}

// ---- live rules, publish, history ---------------------------------------------------------------

async function loadLive(resetDraft) {
  const { status, data } = await api("rules");
  if (status !== 200) { $("live-status").textContent = detailText(data); return; }
  state.live = data;
  const v = data.version;
  const force = data.in_force.digest === v.digest ? "the service applies it" :
    `the service still applies ${data.in_force.digest}` + (data.in_force.last_error ? ` (${data.in_force.last_error})` : "");
  $("live-status").textContent = `Live: version ${v.number} (${v.digest}) by ${v.author}, ${when(v.time)}; ${force}`;
  if (resetDraft) {
    state.draft = { yaml: data.yaml, document: data.document, base: v.number };
    $("yaml-text").value = data.yaml;
    $("draft-base").textContent = `from version ${v.number}`;
    renderForm();
    await validateNow();
  }
  markDirty();
}

function when(epoch) { return new Date(epoch * 1000).toISOString().replace(".000", ""); }

async function publish() {
  const result = $("publish-result");
  result.className = "";
  const checked = await validateNow();
  if (!checked || !checked.ok) { result.textContent = "Fix the draft first: it does not validate."; return; }
  const { status, data } = await api("publish", {
    yaml: state.draft.yaml, base_version: state.draft.base,
    author: $("author").value, message: $("message").value,
  });
  if (status === 409) {
    result.className = "conflict";
    result.textContent = `Not published: ${data.detail}`;
    return;
  }
  if (status !== 200) { result.className = "conflict"; result.textContent = `Not published: ${detailText(data)}`; return; }
  result.textContent = `Published version ${data.version.number} (${data.version.digest}).`;
  $("message").value = "";
  await afterWrite();
}

async function rollback(number) {
  const result = $("publish-result");
  result.className = "";
  const { status, data } = await api("rollback", {
    version: number, base_version: state.live.version.number, author: $("author").value,
  });
  if (status !== 200) { result.className = "conflict"; result.textContent = `Not rolled back: ${detailText(data)}`; return; }
  result.textContent = `Rolled back: version ${data.version.number} has the rules of version ${number}.`;
  await afterWrite();
}

async function afterWrite() {
  await loadLive(true);
  await loadHistory();
  for (let i = 0; i < 20 && state.live.in_force.digest !== state.live.version.digest; i++) {
    await new Promise((r) => setTimeout(r, 500));
    await loadLive(false);
  }
}

async function loadHistory() {
  const { status, data } = await api("history?limit=50");
  const table = $("history-table");
  table.textContent = "";
  if (status !== 200) { table.append(el("caption", { text: detailText(data) })); return; }
  table.append(el("tr", {}, ...["version", "time", "author", "message", "digest", ""].map((t) => el("th", { text: t }))));
  data.versions.forEach((v, i) => {
    const actions = el("td", {},
      el("button", { type: "button", class: "show-diff", text: "diff", onclick: () => showDiff(v.number) }));
    if (i > 0) actions.append(" ", el("button", { type: "button", class: "rollback", "data-version": v.number,
      text: `roll back to ${v.number}`, onclick: () => rollback(v.number) }));
    table.append(el("tr", { "data-version": v.number, class: i === 0 ? "live" : "" },
      el("td", { text: v.number + (i === 0 ? " (live)" : "") }), el("td", { text: when(v.time) }),
      el("td", { class: "author", text: v.author }), el("td", { text: v.message || "" }),
      el("td", {}, el("code", { text: v.digest })), actions));
  });
}

async function showDiff(number) {
  const { status, data } = await api(`history/${number}`);
  const pre = $("history-diff");
  pre.hidden = false;
  pre.textContent = "";
  if (status !== 200) { pre.textContent = detailText(data); return; }
  pre.append(el("strong", { text: `version ${number} by ${data.version.author}\n` }));
  for (const line of data.diff.split("\n")) {
    const cls = line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : "";
    pre.append(el("span", { class: cls, text: line + "\n" }));
  }
}

// ---- preview ------------------------------------------------------------------------------------

function num(x) { return x === null || x === undefined ? "–" : Number(x).toFixed(4); }

function badge(item, side) {
  if (item.other_position === null) return el("span", { class: side === "draft" ? "badge new" : "badge down", text: side === "draft" ? "new" : "dropped" });
  const by = side === "draft" ? item.other_position - item.position : item.position - item.other_position;
  if (by > 0) return el("span", { class: "badge up", text: `▲ ${by}` });
  if (by < 0) return el("span", { class: "badge down", text: `▼ ${-by}` });
  return null;
}

function rankedTable(table, items, side) {
  table.textContent = "";
  const movedHead = side === "draft" ? "vs live" : "in draft";
  table.append(el("tr", {}, ...["#", "item", "category", "score", "rank score", "model #", "source", "rules", movedHead].map((t) => el("th", { text: t }))));
  for (const item of items) {
    const rules = el("td", { class: "rules-cell" }, ...item.rules.map((r) => el("code", { text: r })));
    const cls = item.other_position === null ? (side === "live" ? "dropped" : "moved") : item.moved ? "moved" : "";
    table.append(el("tr", { class: cls, "data-item": item.item_id, "data-position": item.position },
      el("td", { text: item.position }), el("td", { class: "item", text: item.item_id }),
      el("td", { text: item.category }), el("td", { text: num(item.score) }), el("td", { text: num(item.rank_score) }),
      el("td", { text: item.pre_rerank_position ?? "–" }), el("td", { text: item.recall_source }), rules,
      el("td", { class: "move" }, badge(item, side))));
  }
}

async function runPreview(event) {
  event.preventDefault();
  const summary = $("preview-summary");
  let context;
  try { context = JSON.parse($("preview-context").value || "{}"); } catch (e) { summary.textContent = "The context is not JSON: " + e.message; return; }
  await validateNow();  // the preview ranks the draft as it is now, not as last checked
  const body = { user_id: $("preview-user").value, k: Number($("preview-k").value), context, yaml: state.draft.yaml };
  if ($("preview-now").value.trim()) body.now = Number($("preview-now").value);
  summary.textContent = "Ranking…";
  const { status, data } = await api("preview", body);
  if (status !== 200) { summary.textContent = `No preview: ${detailText(data)}`; return; }
  const sources = Object.entries(data.recall.by_source).map(([s, n]) => `${s} ${n}`).join(", ");
  const model = data.degraded ? `degraded (${data.degraded_reason}): recall order` : `scored by ${data.model || "the model"}${data.model_version ? " v" + data.model_version : ""}`;
  summary.textContent = `${data.user_id}${data.user_known ? "" : " (cold start)"}: recall ${sources} → ${data.recall.candidates} candidates, ${model}; ${data.moved.length} items moved.`;
  $("preview-live-version").textContent = data.live.rules_version;
  $("preview-draft-version").textContent = data.draft.rules_version;
  rankedTable($("preview-live"), data.live.items, "live");
  rankedTable($("preview-draft"), data.draft.items, "draft");
  const cands = $("preview-candidates");
  cands.textContent = "";
  cands.append(el("tr", {}, ...["model #", "item", "source", "recall #", "category", "score"].map((t) => el("th", { text: t }))));
  for (const c of data.candidates) {
    cands.append(el("tr", { "data-item": c.item_id }, el("td", { text: c.model_position }), el("td", { text: c.item_id }),
      el("td", { text: c.recall_source }), el("td", { text: c.recall_position }), el("td", { text: c.category }), el("td", { text: num(c.score) })));
  }
}

// ---- start --------------------------------------------------------------------------------------

async function start() {
  const { status, data } = await api("schema");
  if (status !== 200) { $("live-status").textContent = detailText(data); return; }
  state.schema = data.schema;
  state.kinds = data.kinds;
  for (const k of state.kinds) $("add-kind").append(el("option", { value: k, text: k }));
  $("tab-form").addEventListener("click", () => showView("form"));
  $("tab-yaml").addEventListener("click", () => showView("yaml"));
  $("yaml-text").addEventListener("input", () => { state.draft.yaml = $("yaml-text").value; scheduleValidation(); });
  $("add-rule").addEventListener("click", addRule);
  $("publish").addEventListener("click", publish);
  $("discard").addEventListener("click", () => loadLive(true));
  $("preview-form").addEventListener("submit", runPreview);
  await loadLive(true);
  await loadHistory();
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
