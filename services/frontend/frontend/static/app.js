// Draw-a-digit page: canvas (mouse and touch) -> PNG -> POST /v1/predict -> bar chart; feedback buttons.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const keyInput = document.getElementById("api-key");
const penInput = document.getElementById("pen");
let drawing = false;
let drawn = false;
let last = null;

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  drawn = false;
  document.getElementById("result").hidden = true;
  showError("");
}

function point(event) {
  const rect = pad.getBoundingClientRect();
  const source = event.touches ? event.touches[0] : event;
  return { x: (source.clientX - rect.left) * pad.width / rect.width, y: (source.clientY - rect.top) * pad.height / rect.height };
}

function start(event) { event.preventDefault(); drawing = true; last = point(event); stroke(last); }
function move(event) { if (!drawing) return; event.preventDefault(); stroke(point(event)); }
function stop() { drawing = false; last = null; }

function stroke(p) {
  ctx.strokeStyle = "#000";
  ctx.lineWidth = Number(penInput.value) || 18;  // pad pixels; the preprocessing copes with 6 to 30
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(last.x, last.y);
  ctx.lineTo(p.x, p.y);
  ctx.stroke();
  last = p;
  drawn = true;
}

function headers(extra) {
  const h = Object.assign({}, extra);
  if (keyInput && keyInput.value) h["X-API-Key"] = keyInput.value;
  return h;
}

function showError(message) {
  const el = document.getElementById("error");
  el.textContent = message;
  el.hidden = !message;
}

async function call(path, body) {
  const response = await fetch(path, { method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((data.error && data.error.message) || ("HTTP " + response.status));
  return data;
}

let lastAnswer = null;

async function predict() {
  if (!drawn) { showError("Draw a digit first."); return; }
  showError("");
  try {
    const data = await call("/v1/predict", { image: pad.toDataURL("image/png") });
    const p = data.predictions[0];
    lastAnswer = { request_id: data.request_id, feedback_token: p.feedback_token, digit: p.digit };
    render(data, p);
  } catch (err) {
    showError("Prediction failed: " + err.message);
  }
}

function render(data, p) {
  document.getElementById("digit").textContent = p.digit;
  document.getElementById("confidence").textContent = (100 * p.confidence).toFixed(1) + "%";
  document.getElementById("version").textContent = data.version;
  document.getElementById("route").textContent = data.route;
  const bars = document.getElementById("bars");
  bars.replaceChildren();
  p.probabilities.forEach((value, digit) => {
    const label = document.createElement("span");
    label.textContent = digit;
    const track = document.createElement("div");
    const bar = document.createElement("div");
    bar.className = "bar" + (digit === p.digit ? " top" : "");
    bar.style.width = Math.max(1, 100 * value).toFixed(1) + "%";
    bar.dataset.digit = digit;
    track.appendChild(bar);
    const number = document.createElement("span");
    number.textContent = (100 * value).toFixed(1) + "%";
    bars.append(label, track, number);
  });
  document.getElementById("true-label").value = String(p.digit);
  document.getElementById("thanks").hidden = true;
  document.getElementById("result").hidden = false;
}

async function feedback(label) {
  if (!lastAnswer) return;
  try {
    const data = await call("/v1/feedback", { request_id: lastAnswer.request_id, feedback_token: lastAnswer.feedback_token, label: label });
    const thanks = document.getElementById("thanks");
    thanks.textContent = data.counted ? "Thanks, feedback recorded (" + (data.correct ? "correct" : "wrong") + ")." : "Already recorded.";
    thanks.hidden = false;
  } catch (err) {
    showError("Feedback failed: " + err.message);
  }
}

pad.addEventListener("mousedown", start);
pad.addEventListener("mousemove", move);
window.addEventListener("mouseup", stop);
pad.addEventListener("touchstart", start, { passive: false });
pad.addEventListener("touchmove", move, { passive: false });
pad.addEventListener("touchend", stop);
document.getElementById("predict").addEventListener("click", predict);
document.getElementById("clear").addEventListener("click", clearPad);
document.getElementById("right").addEventListener("click", () => lastAnswer && feedback(lastAnswer.digit));
document.getElementById("wrong").addEventListener("click", () => feedback(Number(document.getElementById("true-label").value)));
clearPad();
