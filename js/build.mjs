// The one front-end build: `npm run build` (once) and `npm run dev` (--watch).
//   widgets   src/<widget>.ts (one per widget) -> ../actwidgets/static/<name>.js, ESM:
//             what each widget's _esm loads
//   snapshot  src/snapshot.ts -> ../actwidgets/static/snapshot.iife.js, an IIFE defining the
//             global actwidgetsSnapshot: saved HTML inlines it in a classic <script>
//   extension labextension/build.mjs -> ../actwidgets/labextension/ (JupyterLab 4 / Notebook 7)
// The wheel build (hatch-jupyter-builder in ../pyproject.toml) runs `npm install` here and
// then this, so this installs the extension's own dependencies when they are missing or stale.
// Usage: node build.mjs [--watch] [--development]   (--development: extension source maps)
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build, context } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const watch = process.argv.includes("--watch");
const development = process.argv.includes("--development");

const common = { absWorkingDir: here, bundle: true, minify: true, logLevel: "info" };
const bundles = [
  {
    ...common,
    entryPoints: ["src/attention.ts", "src/dla.ts", "src/heatmap.ts", "src/lens.ts", "src/patching.ts", "src/steering.ts"],
    format: "esm",
    outdir: "../actwidgets/static",
  },
  {
    ...common,
    entryPoints: ["src/snapshot.ts"],
    format: "iife",
    globalName: "actwidgetsSnapshot",
    outfile: "../actwidgets/static/snapshot.iife.js",
  },
];

// npm records each install in node_modules/.package-lock.json, written after package-lock.json.
function installLabextensionDeps() {
  const dir = join(here, "labextension");
  const mtime = (p) => (existsSync(p) ? statSync(p).mtimeMs : 0);
  const installed = mtime(join(dir, "node_modules", ".package-lock.json"));
  if (installed > Math.max(mtime(join(dir, "package.json")), mtime(join(dir, "package-lock.json")))) return;
  console.log("labextension: npm install");
  // The npm that runs this script, else the one on PATH.
  const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ["npm"];
  const run = spawnSync(npm[0], [...npm.slice(1), "install", "--no-audit", "--no-fund"], {
    cwd: dir,
    stdio: "inherit",
    shell: npm[0] === "npm" && process.platform === "win32",
  });
  if (run.status !== 0) {
    console.error(`npm install in js/labextension failed (exit ${run.status ?? run.error})`);
    process.exit(1);
  }
}

installLabextensionDeps();
// Imported only now: it resolves esbuild and @jupyter/builder from labextension/node_modules.
const { buildLabextension } = await import("./labextension/build.mjs");

try {
  if (watch) {
    const contexts = await Promise.all(bundles.map((options) => context(options)));
    await Promise.all([...contexts.map((ctx) => ctx.watch()), buildLabextension({ watch, development })]);
    console.log("watching js/src and js/labextension/src for changes (Ctrl-C to stop)");
  } else {
    await Promise.all([...bundles.map((options) => build(options)), buildLabextension({ development })]);
  }
} catch (e) {
  // esbuild has already printed its errors; this is for the rest (e.g. @jupyter/builder).
  if (!e.errors?.length) console.error(e.message);
  process.exit(1);
}
