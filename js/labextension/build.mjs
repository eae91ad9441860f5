// Build the prebuilt JupyterLab extension into ../../actwidgets/labextension/.
//   1. esbuild: src/plugin.ts + src/mime.ts (and the drawing code in ../src) -> lib/,
//      leaving @jupyterlab/* and @lumino/* as imports (JupyterLab provides them);
//   2. @jupyter/builder (the extension builder of JupyterLab 4.6, rspack + module
//      federation) wraps lib/ into static/remoteEntry.<hash>.js + package.json, with
//      JupyterLab's shared-package metadata from @jupyterlab/core-meta (no Python needed);
//   3. install.json (so `jupyter labextension list` names the Python package), and the
//      version of the Python package in package.json.
// Usage: node build.mjs [--development]
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const development = process.argv.includes("--development");
const pkg = JSON.parse(readFileSync(join(here, "package.json"), "utf8"));
const outputDir = join(here, pkg.jupyterlab.outputDir);

const t0 = Date.now();
rmSync(join(here, "lib"), { recursive: true, force: true });
await build({
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
});
const t1 = Date.now();

const builder = require.resolve("@jupyter/builder/lib/build-labextension.js");
const coreMeta = require.resolve("@jupyterlab/core-meta/core.package.json");
const args = [builder, "--core-package-file", coreMeta, ...(development ? ["--development"] : []), here];
const run = spawnSync(process.execPath, args, { cwd: here, stdio: ["ignore", "pipe", "inherit"], encoding: "utf8" });
if (run.status !== 0) {
  process.stdout.write(run.stdout ?? "");
  console.error(`@jupyter/builder failed (exit ${run.status})`);
  process.exit(run.status || 1);
}
const t2 = Date.now();

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
  `actwidgets labextension ${outPkg.version} -> ${outputDir} (esbuild ${t1 - t0} ms, @jupyter/builder ${t2 - t1} ms)`,
);
