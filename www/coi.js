// Cross-origin isolation on a static host that cannot send headers (GitHub Pages,
// `python3 -m http.server`): the page's threaded engine needs SharedArrayBuffer, which browsers
// give only to cross-origin isolated pages (COOP + COEP headers). Loaded as a plain script, this
// file registers itself as a service worker that adds those headers to every response from this
// origin, then reloads the page once. Where that is impossible (no service workers, not a
// secure context, or it did not take) the page runs its single-threaded engine and says why.
// `?threads=1` skips it. `./dev serve` sends the headers itself, so this does nothing there.
if (typeof window === 'undefined') {
  self.addEventListener('install', () => self.skipWaiting());
  self.addEventListener('activate', (ev) => ev.waitUntil(self.clients.claim()));
  self.addEventListener('fetch', (ev) => {
    const req = ev.request;
    if (req.cache === 'only-if-cached' && req.mode !== 'same-origin') return;
    // Other origins' responses (a model by URL) pass through untouched: CORS covers them.
    if (new URL(req.url).origin !== self.location.origin) return;
    ev.respondWith(fetch(req).then((res) => {
      if (res.status === 0) return res;
      const headers = new Headers(res.headers);
      headers.set('Cross-Origin-Opener-Policy', 'same-origin');
      headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
      return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
    }));
  });
} else if (!window.crossOriginIsolated && window.isSecureContext && navigator.serviceWorker
           && new URLSearchParams(location.search).get('threads') !== '1') {
  const KEY = 'tiller-coi-reloaded';
  const reload = () => {
    // Once per tab: if the reload did not make the page isolated, stay on one thread.
    if (sessionStorage.getItem(KEY)) return;
    sessionStorage.setItem(KEY, '1');
    location.reload();
  };
  navigator.serviceWorker.register(document.currentScript.src).then(() => {
    if (navigator.serviceWorker.controller) reload();
    else navigator.serviceWorker.addEventListener('controllerchange', reload);
  }, (e) => console.warn('tiller: no service worker for cross-origin isolation:', e));
}
