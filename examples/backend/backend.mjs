// The backend of a moderated chat on `ferrows serve`: every proxy of the
// server, in one small Node program without dependencies (docs/protocol.md,
// "The backend in the loop"; the walkthrough is in the README).
//
//   connect    logs users in (a password in the connect data, or a session
//              cookie), gives each a notification channel of its own as a
//              server-side subscription, and credentials for an hour
//   refresh    extends them, unless the user was banned meanwhile
//   subscribe  lets everyone into public rooms, moderators only into `room:mods`
//   publish    moderates: refuses banned words and muted users, trims,
//              stamps each message with its author and time, keeps the last
//              ones, and notifies users mentioned with @name
//   rpc        `whoami`, `room.recent` (the kept messages), and for
//              moderators `user.mute` and `user.ban` (which disconnects the
//              user through the server API)
//
// Every request is checked against the shared secret (PROXY_SECRET), as
// serve signs them with `proxy_secret`. Settings from the environment:
// PORT (3000), FERROWS_API (http://127.0.0.1:8000), FERROWS_API_KEY,
// PROXY_SECRET.

import { createServer } from "node:http";
import { createHmac, timingSafeEqual } from "node:crypto";

const PORT = Number(process.env.PORT ?? 3000);
const FERROWS_API = process.env.FERROWS_API ?? "http://127.0.0.1:8000";
const API_KEY = process.env.FERROWS_API_KEY ?? "";
const SECRET = process.env.PROXY_SECRET ?? "";

// The application's own data: users, rooms, moderation state, messages.
const USERS = {
  alice: { password: "alice-pw", name: "Alice", moderator: false },
  bob: { password: "bob-pw", name: "Bob", moderator: false },
  mia: { password: "mia-pw", name: "Mia (moderator)", moderator: true },
};
const MODERATOR_ROOMS = new Set(["room:mods"]);
const BANNED_WORDS = ["spam", "darn"];
const MAX_TEXT = 500;
const KEPT = 50;
const muted = new Set();
const banned = new Set();
const recent = new Map(); // room -> [message]
const sessions = new Map(); // session cookie -> user (a login page would set it)

/** Whether a request comes from serve: its signature of `TIMESTAMP.BODY`, less than 5 minutes old. */
function signed(headers, body) {
  if (!SECRET) return true;
  const timestamp = headers["x-ferrows-timestamp"] ?? "";
  const given = Buffer.from(headers["x-ferrows-signature"] ?? "");
  const expected = Buffer.from(`sha256=${createHmac("sha256", SECRET).update(`${timestamp}.`).update(body).digest("hex")}`);
  const fresh = Math.abs(Date.now() / 1000 - Number(timestamp)) < 300;
  return fresh && given.length === expected.length && timingSafeEqual(given, expected);
}

const refuse = (code, message) => ({ error: { code, message } });
const hour = () => Math.floor(Date.now() / 1000) + 3600;

function connect({ data, headers }) {
  const cookie = /(?:^|;\s*)session=([^;]+)/.exec(headers.cookie ?? "")?.[1];
  const user = cookie ? sessions.get(cookie) : data?.user;
  const known = USERS[user];
  if (!known || (!cookie && known.password !== data?.password)) return refuse(1401, "unknown user or wrong password");
  if (banned.has(user)) return { disconnect: { code: 4501, reason: "banned" } };
  return {
    result: {
      user,
      name: known.name,
      expire_at: hour(),
      subs: [`notify:${user}`],
      meta: { moderator: known.moderator },
      data: { moderator: known.moderator, rooms: ["room:lobby", ...(known.moderator ? ["room:mods"] : [])] },
    },
  };
}

function refresh({ user }) {
  if (banned.has(user)) return { disconnect: { code: 4501, reason: "banned" } };
  return { result: { expire_at: hour() } };
}

function subscribe({ channel, meta }) {
  if (MODERATOR_ROOMS.has(channel) && !meta?.moderator) return refuse(1403, "moderators only");
  return { result: {} };
}

function publish({ user, channel, data }) {
  if (muted.has(user)) return refuse(1403, "you are muted");
  const text = typeof data?.text === "string" ? data.text.trim() : "";
  if (!text) return refuse(1400, "a message has text");
  if (BANNED_WORDS.some((word) => text.toLowerCase().includes(word))) return refuse(1400, "moderated: mind your language");
  const message = { text: text.slice(0, MAX_TEXT), user, at: new Date().toISOString() };
  const kept = recent.get(channel) ?? [];
  kept.push(message);
  recent.set(channel, kept.slice(-KEPT));
  for (const [, name] of text.matchAll(/@(\w+)/g)) {
    if (USERS[name] && name !== user) notify(name, { mention: message, room: channel });
  }
  return { result: { data: message } };
}

async function rpc({ user, meta, method, data }) {
  switch (method) {
    case "whoami":
      return { result: { data: { user, name: USERS[user]?.name, moderator: meta?.moderator === true } } };
    case "room.recent":
      return { result: { data: recent.get(data?.room) ?? [] } };
    case "user.mute":
    case "user.ban": {
      if (!meta?.moderator) return refuse(1403, "moderators only");
      if (!USERS[data?.user]) return refuse(1404, "no such user");
      if (method === "user.mute") muted.add(data.user);
      else {
        banned.add(data.user);
        await api("/api/disconnect", { user: data.user, code: 4501, reason: "banned" });
      }
      return { result: { data: { done: true } } };
    }
    default:
      return refuse(1404, `no method ${method}`);
  }
}

/** The server API, with its key. */
async function api(path, body) {
  const res = await fetch(`${FERROWS_API}${path}`, {
    method: "POST",
    headers: { Authorization: `apikey ${API_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

function notify(user, data) {
  api("/api/publish", { channel: `notify:${user}`, data }).catch((e) => console.error(`notify ${user}: ${e.message}`));
}

const ROUTES = { "/connect": connect, "/refresh": refresh, "/subscribe": subscribe, "/publish": publish, "/rpc": rpc };

const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", async () => {
    const body = Buffer.concat(chunks);
    const answer = (status, value) => {
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(value));
    };
    if (req.method === "POST" && req.url === "/login") {
      // What a login page would do: a session cookie for the connect proxy.
      const { user, password } = JSON.parse(body.toString() || "{}");
      if (USERS[user]?.password !== password) return answer(401, { error: "wrong password" });
      const session = createHmac("sha256", SECRET || "dev").update(`${user}.${Date.now()}.${Math.random()}`).digest("hex");
      sessions.set(session, user);
      res.setHeader("Set-Cookie", `session=${session}; HttpOnly; SameSite=Strict; Path=/`);
      return answer(200, { user });
    }
    const route = ROUTES[req.url];
    if (req.method !== "POST" || !route) return answer(404, { error: "not found" });
    if (!signed(req.headers, body)) return answer(401, { error: "bad signature" });
    try {
      answer(200, await route(JSON.parse(body.toString())));
    } catch (e) {
      console.error(`${req.url}: ${e.message}`);
      answer(500, { error: "internal" });
    }
  });
});

server.listen(PORT, "127.0.0.1", () => console.log(`backend listening on http://127.0.0.1:${server.address().port}`));
