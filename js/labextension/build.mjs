// Build the prebuilt JupyterLab extension into ../../actwidgets/labextension/.
//   1. esbuild: src/plugin.ts + src/mime.ts (and the drawing code in ../src) -> lib/,
//      leaving @jupyterlab/* and @lumino/* as imports (JupyterLab provides them);
//   2. @jupyter/builder (the extension builder of JupyterLab 4.6, rspack + module
//      federation) wraps lib/ into static/remoteEntry.<hash>.js + package.json, with
//      JupyterLab's shared-package metadata from @jupyterlab/core-meta (no Python needed);
//   3. install.json (so `jupyter labextension list` names the Python package), and the
//      version of the Python package in package.json.
// ../build.mjs (`npm run build` / `npm run dev` in js/) calls buildLabextension(); running
// this file alone (`node build.mjs [--development]`) builds just the extension.
import { spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build, context } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const pkg = JSON.parse(readFileSync(join(here, "package.json"), "utf8"));
const outputDir = join(here, pkg.jupyterlab.outputDir);

function runBuilder(development) {
  const builder = require.resolve("@jupyter/builder/lib/build-labextension.js");
  const coreMeta = require.resolve("@jupyterlab/core-meta/core.package.json");
  const args = [builder, "--core-package-file", coreMeta, ...(development ? ["--development"] : []), here];
  return new Promise((resolve, reject) => {
    // Its stdout is rspack's per-asset listing: shown only when it fails.
    const child = spawn(process.execPath, args, { cwd: here, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk) => (out += chunk));
    child.on("error", reject);
    child.on("close", (status) => {
      if (status === 0) return resolve();
      process.stdout.write(out);
      reject(new Error(`@jupyter/builder failed (exit ${status})`));
    });
  });
}

// Steps 2 and 3, after each successful esbuild run.
async function wrap(development, esbuildMs) {
  const t0 = Date.now();
  await runBuilder(development);
  // The Python package's version, so `jupyter labextension list` agrees with pip.
  const pyproject = readFileSync(join(here, "..", "..", "pyproject.toml"), "utf8");
  const version = /^version\s*=\s*"([^"]+)"/m.exec(pyproject)?.[1];
  const outPkgPath = join(outputDir, "package.json");
  const outPkg = JSON.parse(readFileSync(outPkgPath, "utf8"));
  if (version) outPkg.version = version;
  writeFileSync(outPkgPath, JSON.stringify(outPkg, null, 2) + "\n");
  writeFileSync(
    join(outputDir, "install.json"),
    JSON.stringify(
      {
        packageManager: "python",
        packageName: "actwidgets",
        uninstallInstructions: "Use your Python package manager (pip, conda, etc.) to uninstall the package actwidgets",
      },
      null,
      2,
    ) + "\n",
  );
  console.log(
    `actwidgets labextension ${outPkg.version} -> ${outputDir} (esbuild ${esbuildMs} ms, @jupyter/builder ${Date.now() - t0} ms)`,
  );
}

/**
 * Build once, or with `watch` rebuild (esbuild, then @jupyter/builder) whenever src/ or
 * ../src changes; resolves once watching has started. A failed rebuild is reported and
 * watching goes on; a failed one-shot build rejects.
 */
export async function buildLabextension({ watch = false, development = false } = {}) {
  rmSync(join(here, "lib"), { recursive: true, force: true });
  let started = 0;
  const options = {
    absWorkingDir: here,
    entryPoints: ["src/plugin.ts", "src/mime.ts"],
    outdir: "lib",
    bundle: true,
    splitting: true,
    format: "esm",
    target: "es2020",
    external: ["@jupyterlab/*", "@lumino/*"],
    sourcemap: development,
    logLevel: "warning",
  };
  if (!watch) {
    started = Date.now();
    await build(options);
    await wrap(development, Date.now() - started);
    return;
  }
  const rewrap = {
    name: "actwidgets-labextension",
    setup(b) {
      b.onStart(() => {
        started = Date.now();
      });
      // esbuild awaits this before its next rebuild, so two wraps never overlap.
      b.onEnd(async (result) => {
        if (result.errors.length) return;
        await wrap(development, Date.now() - started).catch((e) => console.error(`labextension: ${e.message}`));
      });
    },
  };
  const ctx = await context({ ...options, plugins: [rewrap] });
  await ctx.watch();
  return ctx;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await buildLabextension({ development: process.argv.includes("--development") }).catch((e) => {
    console.error(e.message);
    process.exit(1);
  });
}
