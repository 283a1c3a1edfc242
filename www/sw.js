// sinkscope's service worker: once the page has been opened, it opens again without a network.
// Network first for the page's own files, so a new build is picked up at once, falling back to the
// copy kept from the last successful fetch. Nothing leaves the origin. The model (.gguf) is not
// handled here: the Web Worker keeps it in Cache Storage itself (src/web/fetch.rs).

// (v3: copies kept before the server sent COOP/COEP lack them, and the page would lose cross-origin
// isolation offline: a new cache name replaces them)
const CACHE = "sinkscope-page-v3";
// Which worker build the page uses (sw.js?w=sinkscope, ?w=sinkscope-relaxed or ?w=sinkscope-webgpu).
const WORKER = new URL(self.location.href).searchParams.get("w") || "sinkscope";

// The files a first visit has already loaded before this worker starts: the page's, and those of the
// worker build in use, as listed by scripts/build-web.sh in files.json; fetched again at install (the
// HTTP cache usually answers) so that the very next visit works offline.
async function precache() {
  const cache = await caches.open(CACHE);
  const files = await fetch("files.json", { cache: "no-cache" }).then((r) => r.json());
  await cache.addAll([...files.page, ...(files.workers[WORKER] || []), "files.json"]);
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
