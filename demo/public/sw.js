// Service worker for the demo: keeps the app shell (HTML, JS, CSS) so the app opens with no
// network after the first visit; the data itself is in IndexedDB. API calls are never cached.
const CACHE = 'or3-demo-shell-v1';

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin || url.pathname.startsWith('/api/')) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      try {
        // Network first, so a new deployment shows up at once; the copy is the fallback.
        const response = await fetch(request);
        if (response.ok) await cache.put(request.mode === 'navigate' ? '/' : request, response.clone());
        return response;
      } catch (err) {
        const cached = await cache.match(request.mode === 'navigate' ? '/' : request);
        if (cached) return cached;
        throw err;
      }
    })(),
  );
});
