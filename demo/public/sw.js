// Service worker for the demo: keeps the app shell (HTML, JS, CSS) so the app opens with no
// network after the first visit; the data itself is in IndexedDB. API calls are never cached.
const CACHE = 'or3-demo-shell-v2';

/** The page and every built asset it references (Vite's hashed /assets/ files). */
async function cacheShell() {
  const cache = await caches.open(CACHE);
  const page = await fetch('/', { cache: 'no-store' });
  if (!page.ok) return;
  const html = await page.clone().text();
  const assets = [...new Set([...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]))];
  await cache.addAll(assets);
  await cache.put('/', page);
  // Assets of older builds are no longer referenced: drop them.
  const wanted = new Set(['/', ...assets].map((p) => new URL(p, self.location.origin).href));
  for (const request of await cache.keys()) if (!wanted.has(request.url)) await cache.delete(request);
}

self.addEventListener('install', (event) => event.waitUntil(cacheShell().then(() => self.skipWaiting())));
self.addEventListener('activate', (event) =>
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
      await self.clients.claim();
    })(),
  ),
);

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  // The admin console (/admin/) is not part of the demo's offline shell.
  if (request.method !== 'GET' || url.origin !== self.location.origin || url.pathname.startsWith('/api/') || url.pathname.startsWith('/admin/')) return;
  const key = request.mode === 'navigate' ? '/' : request;
  event.respondWith(
    (async () => {
      try {
        // Network first, so a new deployment shows up at once; the shell is the offline fallback.
        const response = await fetch(request);
        if (request.mode === 'navigate' && response.ok) event.waitUntil(cacheShell().catch(() => undefined));
        return response;
      } catch (err) {
        const cached = await caches.match(key);
        if (cached) return cached;
        throw err;
      }
    })(),
  );
});
