// The review page: the queue from /review/api/queue, one item from /review/api/items/ID, actions POSTed there.
"use strict";
const REASONS = document.body.dataset.reasons.split(",");
let queue = [], current = null, mode = null;

const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) (k === "class" ? (e.className = v) : e.setAttribute(k, v));
  for (const kid of kids) e.append(kid);
  return e;
};
const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const opts = body ? { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) } : {};
  const r = await fetch("/review/api" + path, { credentials: "same-origin", ...opts });
  const data = await r.json();
  if (!r.ok) throw new Error((data.error && data.error.message) || r.statusText);
  return data;
}

function say(text, err = false) { const s = $("status"); if (s) { s.textContent = text; s.className = "status" + (err ? " err" : ""); } }

function progress(p) {
  const done = p.approved + p.corrected + p.rejected;
  $("progress-text").textContent = `${done} of ${p.total} decided · ${p.open_for_you} open for you · ${p.done_by_you} by you`;
  $("progress-bar").style.width = (p.total ? (100 * done) / p.total : 0) + "%";
}

async function loadQueue(selectFirst = true) {
  const data = await api("/queue?limit=100");
  queue = data.items;
  progress(data.progress);
  const ol = $("queue");
  ol.replaceChildren(...queue.map((it) => {
    const li = el("li", { "data-id": it.id }, `#${it.id} `);
    for (const r of it.reasons) li.append(el("span", { class: "tag " + r }, r));
    if (it.status === "adjudication") li.append(el("span", { class: "tag adjudication" }, "adjudication"));
    li.onclick = () => show(it.id);
    return li;
  }));
  if (selectFirst) {
    if (queue.length) await show(queue[0].id);
    else { current = null; $("item").replaceChildren(el("p", { class: "empty", id: "done" }, "Nothing left to review. Thank you!")); }
  }
}

function conversation(inter) {
  const out = [];
  const req = inter.request;
  if (req.messages) for (const m of req.messages) out.push(el("div", { class: "msg " + m.role }, el("span", { class: "role" }, m.role), m.content || ""));
  else out.push(el("div", { class: "msg user" }, el("span", { class: "role" }, "prompt"), String(req.prompt)));
  out.push(el("div", { class: "msg assistant", id: "reply" }, el("span", { class: "role" }, `reply · ${inter.model_name}`), inter.output));
  return out;
}

async function show(id) {
  const item = await api("/items/" + id);
  current = item; mode = null;
  for (const li of $("queue").children) li.classList.toggle("current", Number(li.dataset.id) === id);
  const inter = item.interaction || { request: { prompt: "(deleted)" }, output: "", model_name: "?" };
  const fb = item.feedback.map((f) => el("div", { class: "feedback" },
    `${f.user}: ${f.thumbs ? (f.thumbs === "up" ? "thumbs up · " : "thumbs down · ") : ""}${f.rating ? f.rating + "/5 " : ""}${f.comment || ""}`
    + (f.correction ? ` — suggests: “${f.correction}”` : "")));
  const acts = item.actions.map((a) => el("div", { class: "feedback" }, `${a.reviewer} ${a.action}${a.reason ? " (" + a.reason + ")" : ""}${a.label ? " [" + a.label + "]" : ""}${a.withdrawn ? " (withdrawn by " + a.withdrawn.by + ": " + a.withdrawn.reason + ")" : ""}`));
  const suggestion = (item.feedback.find((f) => f.correction) || {}).correction || inter.output;
  const reasons = el("div", { class: "reasons editor", id: "reject-editor" }, "Reason: ",
    ...REASONS.map((r, i) => { const b = el("button", { id: "reason-" + r }, `${i + 1} ${r}`); b.onclick = () => decide("reject", { reason: r }); return b; }));
  const corr = el("div", { class: "editor", id: "correct-editor" }, el("textarea", { id: "correction-text" }),
    el("div", { class: "actions" }, el("button", { id: "save-correction", class: "" }, "Save correction")));
  const lab = el("div", { class: "editor", id: "label-editor" }, el("input", { type: "text", id: "label-text", placeholder: "label, e.g. the intent" }),
    el("div", { class: "actions" }, el("button", { id: "save-label" }, "Save label")));
  const buttons = el("div", { class: "actions" },
    el("button", { id: "approve" }, "Approve ", el("kbd", {}, "a")), el("button", { id: "correct" }, "Correct ", el("kbd", {}, "c")),
    el("button", { id: "reject" }, "Reject ", el("kbd", {}, "r")), el("button", { id: "label" }, "Label ", el("kbd", {}, "l")));
  const section = $("item");
  section.dataset.itemId = item.id;
  section.replaceChildren(
    el("div", { class: "meta" }, `Item #${item.id} · ${item.status} · needs ${item.required_reviews} review(s) · response ${item.response_id} · user ${inter.user || "?"}` + (item.final_label ? ` · label ${item.final_label}` : "")),
    ...item.reasons.map((r) => el("span", { class: "tag " + r }, r)),
    ...conversation(inter), el("h3", {}, "Feedback"), ...(fb.length ? fb : [el("div", { class: "feedback" }, "none")]),
    ...(acts.length ? [el("h3", {}, "Reviews so far"), ...acts] : []), buttons, corr, reasons, lab, el("div", { class: "status", id: "status" }));
  $("correction-text").value = suggestion;
  $("approve").onclick = () => decide("approve");
  $("correct").onclick = () => open("correct");
  $("reject").onclick = () => open("reject");
  $("label").onclick = () => open("label");
  $("save-correction").onclick = () => decide("correct", { reply: $("correction-text").value });
  $("save-label").onclick = () => decide("label", { label: $("label-text").value });
}

function open(which) {
  mode = which;
  for (const name of ["correct", "reject", "label"]) $(name + "-editor").classList.toggle("open", name === which);
  if (which === "correct") $("correction-text").focus();
  if (which === "label") $("label-text").focus();
}

async function decide(action, extra = {}) {
  if (!current) return;
  try {
    const item = await api("/items/" + current.id, { action, ...extra });
    say(`${action === "label" ? "Labelled" : "Saved"}: #${item.id} is ${item.status}.`);
    if (action === "label") { await show(item.id); say(`Labelled #${item.id} ${item.final_label}.`); return; }
    await loadQueue(true);
  } catch (e) { say(e.message, true); }
}

function step(delta) {
  if (!current || !queue.length) return;
  const i = queue.findIndex((q) => q.id === current.id);
  const next = queue[(i + delta + queue.length) % queue.length];
  if (next) show(next.id);
}

document.addEventListener("keydown", (ev) => {
  const typing = ["TEXTAREA", "INPUT"].includes(document.activeElement.tagName);
  if (ev.key === "Escape") { mode = null; for (const n of ["correct", "reject", "label"]) $(n + "-editor")?.classList.remove("open"); document.activeElement.blur(); return; }
  if (typing) {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); (mode === "label" ? $("save-label") : $("save-correction")).click(); }
    if (ev.key === "Enter" && mode === "label" && !ev.ctrlKey) { ev.preventDefault(); $("save-label").click(); }
    return;
  }
  if (mode === "reject" && /^[1-9]$/.test(ev.key) && REASONS[Number(ev.key) - 1]) { decide("reject", { reason: REASONS[Number(ev.key) - 1] }); return; }
  const keys = { a: () => decide("approve"), c: () => open("correct"), r: () => open("reject"), l: () => open("label"), j: () => step(1), k: () => step(-1) };
  if (keys[ev.key]) { ev.preventDefault(); keys[ev.key](); }
});

loadQueue(true).catch((e) => { $("item").replaceChildren(el("p", { class: "empty err" }, e.message)); });
