// The demo page: microphone → AudioWorklet (16-bit PCM) → binary WebSocket frames →
// transcript. Tentative text is shown grey and replaced in place; finals accumulate.
const toggle = document.getElementById("toggle");
const stateEl = document.getElementById("state");
const transcript = document.getElementById("transcript");
const errorEl = document.getElementById("error");

let session = null;
// Every transcript the page rendered, in order: what a person saw, kept so that tests (and a
// curious user, from the console) can check it without racing the next update.
window.sttRendered = [];

function setState(name, text) {
  stateEl.className = `state ${name}`;
  stateEl.textContent = text ?? name;
}

// Errors accumulate until the next start: a server's ErrorResponse is usually followed by the
// close that it explains, and the user needs to see both.
function showError(message) {
  errorEl.textContent = errorEl.hidden ? message : `${errorEl.textContent}\n${message}`;
  errorEl.hidden = false;
}

function tentativeItem() {
  let item = transcript.querySelector("li.tentative");
  if (!item) {
    item = document.createElement("li");
    item.className = "tentative";
    transcript.appendChild(item);
  }
  return item;
}

function onSegment(segment) {
  const item = tentativeItem();
  item.textContent = segment.text;
  if (segment.isFinal) item.className = "final";
  window.sttRendered.push({ kind: segment.isFinal ? "final" : "tentative", text: segment.text });
}

async function openAudio() {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
  });
  // Ask the browser to resample to 16 kHz; where it cannot, send the device rate and let the
  // server resample (it accepts 8-48 kHz).
  let context;
  try {
    context = new AudioContext({ sampleRate: 16000 });
  } catch {
    context = new AudioContext();
  }
  await context.audioWorklet.addModule("/static/pcm-worklet.js");
  const source = context.createMediaStreamSource(stream);
  const worklet = new AudioWorkletNode(context, "pcm-worklet");
  source.connect(worklet);
  // The worklet outputs silence; connecting it keeps the browser pulling audio through it.
  worklet.connect(context.destination);
  return { stream, context, worklet };
}

async function start() {
  errorEl.hidden = true;
  errorEl.textContent = "";
  setState("connecting", "connecting…");
  toggle.disabled = true;
  let audio;
  try {
    audio = await openAudio();
  } catch (err) {
    setState("error", "no microphone");
    showError(`Cannot use the microphone: ${err.message ?? err}`);
    toggle.disabled = false;
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const rate = audio.context.sampleRate;
  const params = new URLSearchParams(location.search);
  params.set("sampleRate", String(rate));
  params.set("channels", "1");
  const ws = new WebSocket(`${scheme}://${location.host}/ws/transcribe?${params}`);
  ws.binaryType = "arraybuffer";
  session = { ws, audio };

  ws.onopen = () => {
    setState("connected", `listening (${rate} Hz)`);
    toggle.textContent = "Stop";
    toggle.classList.add("active");
    toggle.disabled = false;
    audio.worklet.port.onmessage = (event) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(event.data);
    };
  };
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if ("error" in message) {
      showError(`Server error ${message.code}: ${message.error}`);
    } else if ("text" in message) {
      onSegment(message);
    }
  };
  ws.onerror = () => showError("The connection to the server failed.");
  ws.onclose = (event) => {
    if (event.code !== 1000 && event.code !== 1005) {
      showError(`Connection closed (${event.code}${event.reason ? `: ${event.reason}` : ""}).`);
      setState("error", "disconnected");
    } else {
      setState("idle");
    }
    stop();
  };
}

function stop() {
  if (!session) return;
  const { ws, audio } = session;
  session = null;
  audio.worklet.port.onmessage = null;
  audio.stream.getTracks().forEach((track) => track.stop());
  audio.context.close();
  if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000);
  toggle.textContent = "Start";
  toggle.classList.remove("active");
  toggle.disabled = false;
  if (!stateEl.classList.contains("error")) setState("idle");
}

toggle.addEventListener("click", () => (session ? stop() : start()));
