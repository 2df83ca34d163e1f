// Reverse proxies that stand for real network conditions between a browser
// and `ferrows serve`:
// - `strip-upgrade`: an HTTP/1.1 proxy that does not know WebSocket. It drops
//   the hop-by-hop headers (RFC 9110, 7.6.1), `Upgrade` with them, so a
//   WebSocket handshake reaches the server as a plain GET and fails; other
//   answers stream through.
// - `buffer`: the same, and it holds every answer until it is complete before
//   sending it on (as some corporate proxies and antivirus gateways do), so an
//   event stream never arrives; answers that end (long polls) do.
import http from 'node:http';

const HOP_BY_HOP = ['connection', 'upgrade', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding'];

function endToEnd(headers) {
  const kept = { ...headers };
  for (const name of HOP_BY_HOP) delete kept[name];
  return kept;
}

/** Starts a proxy of `mode` in front of `target` (`http://host:port`) on a
 * free port of 127.0.0.1; resolves with `{url, close()}`. */
export async function startProxy(target, mode) {
  if (!['strip-upgrade', 'buffer'].includes(mode)) throw new Error(`unknown proxy mode ${mode}`);
  const upstreamUrl = new URL(target);
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const upstream = http.request(
      { host: upstreamUrl.hostname, port: upstreamUrl.port, method: req.method, path: req.url, headers: endToEnd(req.headers) },
      (answer) => {
        const headers = endToEnd(answer.headers);
        if (mode === 'strip-upgrade') {
          res.writeHead(answer.statusCode, headers);
          answer.pipe(res);
          return;
        }
        const chunks = [];
        answer.on('data', (chunk) => chunks.push(chunk));
        answer.on('end', () => {
          const body = Buffer.concat(chunks);
          res.writeHead(answer.statusCode, { ...headers, 'content-length': body.length });
          res.end(body);
        });
      },
    );
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  // No 'upgrade' listener: a request with `Upgrade` is served as any other.
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
}
