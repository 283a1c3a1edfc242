// sinkscope's service worker: once the page has been opened, it opens again without a network.
// Network first for the page's own files, so a new build is picked up at once, falling back to the
// copy kept from the last successful fetch. Nothing leaves the origin. The model (.gguf) is not
// handled here: the Web Worker keeps it in Cache Storage itself (src/web/fetch.rs).

const CACHE = "sinkscope-page-v1";
// The files a first visit has already loaded before this worker starts: fetched again at install (the
// HTTP cache usually answers) so that the very next visit works offline.
const SHELL = ["./", "app.js", "sinkscope_loader.js", "sinkscope.js", "sinkscope_bg.wasm"];

async function precache() {
  const cache = await caches.open(CACHE);
  const page = await fetch("./", { cache: "no-cache" });
  const html = await page.clone().text();
  await cache.put("./", page);
  // the stylesheet's name carries a content hash (Trunk): read it from the page
  const hashed = [...html.matchAll(/(?:href|src)="\/?([\w.-]+\.(?:css|js))"/g)].map((m) => m[1]);
  await cache.addAll([...new Set([...SHELL.slice(1), ...hashed])]);
}

self.addEventListener("install", (event) => {
  event.waitUntil(precache().then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith("sinkscope-page-") && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

// Store a fresh response unless the kept copy is the same version (the wasm is 38 MB: do not rewrite
// it on every visit).
async function keep(cache, req, res) {
  const old = await cache.match(req);
  const version = (r) => ["etag", "last-modified", "content-length"].map((h) => r.headers.get(h)).join("|");
  if (old && (res.headers.get("etag") || res.headers.get("last-modified")) && version(old) === version(res)) return;
  await cache.put(req, res);
}

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== "GET" || url.origin !== self.location.origin || url.pathname.endsWith(".gguf")) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const res = await fetch(req);
      if (res.status === 200) event.waitUntil(keep(cache, req, res.clone()));
      return res;
    } catch (err) {
      const hit = await cache.match(req, { ignoreSearch: true });
      if (hit) return hit;
      throw err;
    }
  })());
});
