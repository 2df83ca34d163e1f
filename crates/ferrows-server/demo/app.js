// The ferrows chat demo: rooms are channels `chat:<room>`, server statistics
// come from `$sys:stats`. No build step; the client is served at /ferrows.js.
import { Client } from "/ferrows.js";

const PRESET_ROOMS = ["lobby", "random", "rust", "help"];
const ROOM_RE = /^[A-Za-z0-9_.@-]{1,64}$/;
const HISTORY = 50;

const $ = (id) => document.getElementById(id);
const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};

// --- name ---------------------------------------------------------------
const nameInput = $("name");
function loadName() {
  try { return localStorage.getItem("ferrows.name"); } catch { return null; }
}
nameInput.value = loadName() || `guest-${Math.floor(1000 + Math.random() * 9000)}`;

// --- client -----------------------------------------------------------------
// `?transport=websocket|sse|longpoll` forces one; by default the client
// falls back from WebSocket to Server-Sent Events to long polling by itself.
const TRANSPORT_NAMES = { websocket: "WebSocket", sse: "Server-Sent Events", longpoll: "long polling" };
const asked = new URLSearchParams(location.search).get("transport");
const transport = Object.hasOwn(TRANSPORT_NAMES, asked ?? "") ? asked : "auto";
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const client = new Client(wsUrl, { name: nameInput.value, transport, minReconnectDelay: 500, maxReconnectDelay: 15000 });

const transportSelect = $("transport");
transportSelect.value = transport;
transportSelect.addEventListener("change", () => {
  const url = new URL(location.href);
  if (transportSelect.value === "auto") url.searchParams.delete("transport");
  else url.searchParams.set("transport", transportSelect.value);
  location.assign(url);
});

nameInput.addEventListener("change", () => {
  const name = nameInput.value.trim();
  if (!name || name === client.options.name) { nameInput.value = client.options.name; return; }
  try { localStorage.setItem("ferrows.name", name); } catch { /* private mode */ }
  // The name goes with `connect`: reconnect; subscriptions recover by themselves.
  client.options.name = name;
  client.disconnect();
  client.connect();
});

// --- status -------------------------------------------------------------------
const status = $("status");
let countdown = null;
function setStatus(state, text) {
  status.dataset.state = state;
  status.textContent = text;
}
client.on("state", (state, detail) => {
  clearInterval(countdown);
  document.querySelector(".stats").classList.toggle("stale", state !== "connected");
  if (detail?.transport) status.dataset.transport = detail.transport;
  const over = TRANSPORT_NAMES[client.transport];
  if (state === "connected") setStatus("connected", `connected · ${over}`);
  else if (state === "connecting") setStatus("connecting", `connecting · ${over}…`);
  else if (detail?.fallback) setStatus("connecting", `trying ${TRANSPORT_NAMES[detail.fallback]}…`);
  else if (detail?.reconnect) {
    const at = Date.now() + detail.delay;
    const tick = () => setStatus("reconnecting", `reconnecting in ${Math.max(0, Math.ceil((at - Date.now()) / 1000))} s`);
    tick();
    countdown = setInterval(tick, 250);
  } else setStatus("offline", "offline");
});
client.on("error", (err) => {
  setStatus("offline", "offline");
  showError(`Connection stopped: ${err.message}`);
});

const errorBox = $("error");
let errorTimer = null;
function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { errorBox.hidden = true; }, 6000);
}

// --- server statistics ----------------------------------------------------------
const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
client.subscribe("$sys:stats", {
  onPublication({ data }) {
    if (!data || typeof data !== "object") return;
    $("clients-count").textContent = number.format(data.clients ?? 0);
    $("rate").textContent = number.format(data.messages_per_sec ?? 0);
    $("subscriptions-count").textContent = number.format(data.subscriptions ?? 0);
  },
  onError() {
    for (const id of ["clients-count", "rate", "subscriptions-count"]) $(id).textContent = "n/a";
  },
});

// --- rooms ----------------------------------------------------------------------
const roomsNav = $("rooms");
const messages = $("messages");
const presenceList = $("presence");
let room = null; // {name, channel, sub, messages: Map offset -> element, members: Map client -> info}

function renderRooms() {
  const names = [...new Set([...PRESET_ROOMS, room?.name].filter(Boolean))];
  roomsNav.replaceChildren(...names.map((name) => {
    const a = el("a", `room${name === room?.name ? " active" : ""}`, `# ${name}`);
    a.href = `#${name}`;
    a.dataset.room = name;
    if (name === room?.name) a.setAttribute("aria-current", "page");
    return a;
  }));
}

function joinRoom(name) {
  if (!ROOM_RE.test(name)) { showError(`Invalid room name: ${name}`); return; }
  if (room?.name === name) return;
  room?.sub.unsubscribe();
  const current = { name, channel: `chat:${name}`, messages: new Map(), members: new Map() };
  room = current;
  $("room-title").textContent = `# ${name}`;
  $("room-note").textContent = "";
  messages.replaceChildren();
  renderPresence();
  renderRooms();
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  current.sub = client.subscribe(current.channel, {
    onPublication: (pub) => addMessage(current, pub),
    onJoin: (info) => { current.members.set(info.client, info); renderPresence(); },
    onLeave: (info) => { current.members.delete(info.client); renderPresence(); },
    onSubscribed: () => { loadHistory(current); loadPresence(current); },
    onRecovery: ({ recovered }) => {
      if (!recovered) {
        // The server lost this room's history (restarted without a shared
        // broker, or its Redis did): start again from what it has now.
        current.messages.clear();
        if (room === current) {
          messages.replaceChildren();
          $("room-note").textContent = "earlier messages were lost on the server";
        }
        loadHistory(current);
      }
    },
    onError: (err) => {
      showError(`Cannot join #${name}: ${err.message}`);
      $("room-note").textContent = "not joined";
    },
  });
}

async function loadHistory(current) {
  try {
    const { publications } = await client.history(current.channel, HISTORY);
    for (const pub of publications) addMessage(current, pub);
  } catch (err) {
    if (room === current && err.code !== "disconnected") $("room-note").textContent = "no history";
  }
}

async function loadPresence(current) {
  try {
    const clients = await client.presence(current.channel);
    current.members = new Map(Object.entries(clients).map(([id, info]) => [id, { client: id, ...info }]));
    renderPresence();
  } catch (err) {
    if (room === current && err.code !== "disconnected") {
      presenceList.replaceChildren(el("li", "muted small", "presence is off here"));
    }
  }
}

function renderPresence() {
  const members = [...room.members.values()].sort((a, b) => (a.name || a.user || "").localeCompare(b.name || b.user || ""));
  $("presence-count").textContent = String(members.length);
  presenceList.replaceChildren(...members.map((m) => {
    const li = el("li", "member");
    const name = m.name || m.user || "anonymous";
    li.append(el("span", "avatar", initials(name)), el("span", "member-name", name));
    li.style.setProperty("--hue", hue(name));
    if (m.client === client.clientId) li.append(el("span", "muted small", "you"));
    return li;
  }));
}

function initials(name) {
  return name.replace(/[^A-Za-z0-9]+/g, " ").trim().split(" ").slice(0, 2).map((w) => w[0]?.toUpperCase() ?? "").join("") || "?";
}

function hue(text) {
  let h = 0;
  for (const ch of text) h = (h * 31 + ch.codePointAt(0)) % 360;
  return String(h);
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

/** Adds a publication in offset order; the same offset twice is shown once. */
function addMessage(current, pub) {
  const key = typeof pub.offset === "number" ? pub.offset : Symbol("no offset");
  if (current.messages.has(key)) return;
  const data = pub.data ?? {};
  const text = typeof data === "string" ? data : typeof data.text === "string" ? data.text : JSON.stringify(data);
  const author = pub.info?.name || pub.info?.user || data.name || "server";
  const li = el("li", "message");
  if (typeof pub.offset === "number") li.dataset.offset = String(pub.offset);
  if (pub.info && pub.info.client === client.clientId) li.classList.add("own");
  li.style.setProperty("--hue", hue(author));
  const head = el("div", "message-head");
  head.append(el("span", "author", author), el("time", "muted small", timeFormat.format(Number.isFinite(data.ts) ? new Date(data.ts) : new Date())));
  li.append(head, el("div", "text", text));
  current.messages.set(key, li);
  if (room !== current) return;
  const stick = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;
  // Usually the newest: append; history that arrives late goes before it.
  let before = null;
  if (typeof pub.offset === "number") {
    for (let node = messages.lastElementChild; node && Number(node.dataset.offset ?? -1) > pub.offset; node = node.previousElementSibling) before = node;
  }
  messages.insertBefore(li, before);
  if (stick || li.classList.contains("own")) messages.scrollTop = messages.scrollHeight;
}

// --- forms ---------------------------------------------------------------------------
$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("room-input");
  const name = input.value.trim().replace(/^#/, "");
  if (!name) return;
  input.value = "";
  joinRoom(name);
});

roomsNav.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-room]");
  if (!link) return;
  event.preventDefault();
  joinRoom(link.dataset.room);
});

window.addEventListener("hashchange", () => {
  const name = decodeURIComponent(location.hash.slice(1));
  if (name) joinRoom(name);
});

const messageInput = $("message-input");
$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = messageInput.value.trim();
  if (!text || !room) return;
  messageInput.value = "";
  try {
    await client.publish(room.channel, { text, ts: Date.now() });
  } catch (err) {
    messageInput.value ||= text;
    showError(`Not sent: ${err.message}`);
  }
});

// --- start -------------------------------------------------------------------------------
const fromHash = decodeURIComponent(location.hash.slice(1));
joinRoom(ROOM_RE.test(fromHash) ? fromHash : PRESET_ROOMS[0]);
client.connect();
if (matchMedia("(min-width: 761px)").matches) messageInput.focus(); // no keyboard popping up on phones
