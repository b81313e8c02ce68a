// rjepa chat page: plain browser JavaScript, no build step. User text is only ever set via textContent.
"use strict";

const $ = (id) => document.getElementById(id);
let last = null; // the last /chat response

function userId() {
  let id = localStorage.getItem("rjepa-user");
  if (!id) {
    id = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(16).slice(2));
    localStorage.setItem("rjepa-user", id);
  }
  return id;
}

function fmt(x, digits = 3) {
  return x === null || x === undefined ? "—" : Number(x).toFixed(digits);
}

async function postJSON(path, body) {
  const res = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({ detail: res.statusText }));
  if (!res.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    throw new Error(`${res.status}: ${detail}`);
  }
  return data;
}

async function checkHealth() {
  const el = $("health");
  try {
    const h = await (await fetch("/health")).json();
    if (h.status === "ok") {
      el.textContent = `checkpoint ${h.checkpoint_id} · ${h.llm_tag} · ${h.dataset_version || ""} · ${h.device}`;
      el.classList.remove("down");
    } else {
      el.textContent = h.message || "no checkpoint loaded";
      el.classList.add("down");
    }
  } catch (e) {
    el.textContent = "service unreachable";
    el.classList.add("down");
  }
}

function renderSteps(resp) {
  const ol = $("steps");
  ol.replaceChildren();
  const ranked = resp.jepa.surprising_steps; // most surprising first (position-normalised when available)
  const hot = new Set(ranked);
  const z = resp.jepa.step_z;
  resp.steps.forEach((text, i) => {
    const li = document.createElement("li");
    li.textContent = text;
    if (hot.has(i)) li.classList.add("surprising");
    if (ranked.length && ranked[0] === i) {
      li.classList.add("most-surprising");
      li.title = "the step R-JEPA finds most surprising: the likeliest first mistake";
    }
    const s = resp.jepa.step_surprise[i];
    if (s !== undefined) {
      const span = document.createElement("span");
      span.className = "surprise";
      span.textContent = z && z[i] !== undefined ? `surprise ${fmt(s)} · z ${fmt(z[i])}` : `surprise ${fmt(s)}`;
      li.appendChild(span);
    }
    ol.appendChild(li);
  });
}

function renderCandidates(resp) {
  const body = $("candidates");
  body.replaceChildren();
  const cands = resp.jepa.candidates;
  $("candidates-table").hidden = cands.length === 0;
  for (const c of cands) {
    const tr = document.createElement("tr");
    tr.className = c.chosen ? "candidate chosen" : "candidate rejected";
    const badge = document.createElement("span");
    badge.className = "badge " + (c.chosen ? "chosen" : "rejected");
    badge.textContent = c.chosen ? "chosen" : "rejected";
    const lpt = c.logprob !== null && c.num_tokens ? c.logprob / c.num_tokens : null;
    const cells = [String(c.index + 1), badge, c.final_answer || "—", fmt(c.jepa_loss), fmt(c.score01, 2),
                   fmt(lpt), fmt(c.composite, 2), String(c.steps.length) + (c.note ? ` (${c.note})` : "")];
    for (const v of cells) {
      const td = document.createElement("td");
      if (v instanceof Node) td.appendChild(v); else td.textContent = v;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function render(resp) {
  last = resp;
  $("answer").textContent = resp.answer;
  renderSteps(resp);
  $("score01").textContent = fmt(resp.jepa.score01, 2);
  $("jepa-loss").textContent = fmt(resp.jepa.jepa_loss);
  $("mode-used").textContent = resp.mode;
  $("checkpoint").textContent = resp.checkpoint_id;
  renderCandidates(resp);
  $("feedback-status").textContent = "";
  $("thumb-up").disabled = false;
  $("thumb-down").disabled = false;
  $("result").hidden = false;
}

async function ask(ev) {
  ev.preventDefault();
  const prompt = $("prompt").value.trim();
  if (!prompt) return;
  const mode = document.querySelector('input[name="mode"]:checked').value;
  $("error").hidden = true;
  $("busy").hidden = false;
  $("ask").disabled = true;
  try {
    const resp = await postJSON("/chat", {
      prompt,
      mode,
      selection: $("selection").value,
      k: Number($("k").value) || 4,
      temperature: Number($("temperature").value),
    });
    render(resp);
  } catch (e) {
    $("error").textContent = e.message;
    $("error").hidden = false;
  } finally {
    $("busy").hidden = true;
    $("ask").disabled = false;
  }
}

async function sendFeedback(rating) {
  if (!last) return;
  $("thumb-up").disabled = true;
  $("thumb-down").disabled = true;
  try {
    const r = await postJSON("/feedback", {
      interaction_id: last.interaction_id,
      rating,
      consent: $("consent").checked,
      user_id: userId(),
    });
    $("feedback-status").textContent = r.text_kept
      ? "Thanks! Recorded, and it may help train the model."
      : "Thanks! Recorded (your text is not kept).";
  } catch (e) {
    $("feedback-status").textContent = "";
    $("error").textContent = e.message;
    $("error").hidden = false;
    $("thumb-up").disabled = false;
    $("thumb-down").disabled = false;
  }
}

$("ask-form").addEventListener("submit", ask);
$("thumb-up").addEventListener("click", () => sendFeedback("up"));
$("thumb-down").addEventListener("click", () => sendFeedback("down"));
checkHealth();
