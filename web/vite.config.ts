import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The generated client lives in sdk/ts (scripts/gen_sdk.py); its imports of @bufbuild/protobuf
// resolve to this package's copy (dedupe), so there is exactly one protobuf runtime in the bundle.
export default defineConfig({
  plugins: [react()],
  base: "/",
  resolve: {
    alias: { "@sdk": fileURLToPath(new URL("../sdk/ts/floe/v1", import.meta.url)) },
    dedupe: ["@bufbuild/protobuf"],
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 800,
  },
  // `npm run dev` against a running control plane (floe up): gRPC-web calls go to its HTTP port.
  server: { proxy: { "/floe.v1.": "http://127.0.0.1:9091" } },
});
