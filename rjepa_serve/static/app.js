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

function stepBadges(resp) {
  // step index -> [badge class, badge text, tooltip] for the NUDGE and PLAN traces
  const out = new Map();
  if (resp.nudge) {
    for (const t of resp.nudge.trace) {
      if (t.nudged) out.set(t.index, ["nudged", "nudged", `was: ${t.original} — ${t.reason}`]);
    }
  }
  if (resp.plan) {
    for (const p of resp.plan.plan) out.set(p.index, ["planned", "planned", `decoded prediction: ${p.decoded}`]);
  }
  return out;
}

function renderSteps(resp) {
  const ol = $("steps");
  ol.replaceChildren();
  const ranked = resp.jepa.surprising_steps; // most surprising first (position-normalised when available)
  const hot = new Set(ranked);
  const z = resp.jepa.step_z;
  const badges = stepBadges(resp);
  resp.steps.forEach((text, i) => {
    const li = document.createElement("li");
    li.textContent = text;
    if (badges.has(i)) {
      const [cls, label, tip] = badges.get(i);
      const b = document.createElement("span");
      b.className = "badge " + cls;
      b.textContent = label;
      b.title = tip;
      li.classList.add(cls);
      li.appendChild(b);
    }
    if (hot.has(i)) li.classList.add("surprising");
    const first = resp.jepa.first_unlawful_step;
    if (first !== null && first !== undefined ? first === i : ranked.length && ranked[0] === i) {
      li.classList.add("most-surprising");
      li.title =
        first !== null && first !== undefined
          ? "the first step more surprising than lawful steps at its position: the likeliest first mistake"
          : "the step R-JEPA finds most surprising";
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

function fillRows(tbody, rows) {
  tbody.replaceChildren();
  for (const cells of rows) {
    const tr = document.createElement("tr");
    for (const v of cells) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
}

function renderTraces(resp) {
  const nudge = resp.nudge;
  $("nudge-table").hidden = !nudge;
  fillRows($("nudge-rows"), nudge ? nudge.trace.map((t) => [
    String(t.index + 1), t.nudged ? "nudged" : "kept", fmt(t.surprise), fmt(t.threshold),
    t.predicted_text || "—", t.reason]) : []);
  const plan = resp.plan;
  $("plan-table").hidden = !plan;
  fillRows($("plan-rows"), plan ? plan.plan.map((p) => [String(p.index + 1), p.decoded, p.text, fmt(p.cosine)]) : []);
  const notes = [];
  if (nudge) {
    notes.push(`NUDGE: ${nudge.nudged_steps.length} of ${nudge.trace.length} steps nudged; ` +
               `${nudge.tokens_used} of ${nudge.budget_tokens} budget tokens used; threshold from ${nudge.threshold_source}.`);
  }
  if (plan) notes.push(...plan.notes);
  $("mode-notes").textContent = notes.join(" ");
  $("mode-notes").hidden = notes.length === 0;
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
  renderTraces(resp);
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
    const body = {
      prompt,
      mode,
      selection: $("selection").value,
      k: Number($("k").value) || 4,
      temperature: Number($("temperature").value),
    };
    if (mode === "NUDGE") {
      const t = $("nudge-threshold").value.trim();
      body.nudge = { m: Number($("nudge-m").value) || 4, alpha: Number($("nudge-alpha").value) || 0 };
      if (t !== "") body.nudge.threshold = Number(t);
    } else if (mode === "PLAN") {
      const steps = $("plan-steps").value.split("\n").map((x) => x.trim()).filter((x) => x);
      body.plan = { steps, k: Number($("plan-k").value) || 2, verbalise: $("plan-verbalise").value };
    }
    const resp = await postJSON("/chat", body);
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

function showModeControls() {
  const mode = document.querySelector('input[name="mode"]:checked').value;
  $("nudge-controls").hidden = mode !== "NUDGE";
  $("plan-controls").hidden = mode !== "PLAN";
}

$("ask-form").addEventListener("submit", ask);
for (const r of document.querySelectorAll('input[name="mode"]')) r.addEventListener("change", showModeControls);
$("thumb-up").addEventListener("click", () => sendFeedback("up"));
$("thumb-down").addEventListener("click", () => sendFeedback("down"));
checkHealth();
