import { defineConfig } from 'vite';

/**
 * The demo chat app: a static build the Worker serves as static assets (wrangler.toml
 * `[assets]`), so `npm run dev` shows it at http://127.0.0.1:8787 next to the API.
 */
export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    // The admin console (admin/) is its own small app in the same build: /admin/ and /admin/reset.html.
    rollupOptions: {
      input: { main: `${import.meta.dirname}/index.html`, admin: `${import.meta.dirname}/admin/index.html`, reset: `${import.meta.dirname}/admin/reset.html` },
    },
  },
});
