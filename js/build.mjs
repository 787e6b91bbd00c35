// Bundles the front end: the worklet first (as text, since it is loaded from a Blob URL),
// then the widget module with that text defined as WORKLET_SOURCE, then the stylesheet;
// and the VadExplorer's module and stylesheet.
import * as esbuild from "esbuild";

const out = "funasr_widget/static";
/** @type {esbuild.BuildOptions} */
const common = { bundle: true, target: "es2020", logLevel: "info" };

const worklet = await esbuild.build({ ...common, entryPoints: ["js/worklet.js"], format: "iife", write: false, logLevel: "warning" });

await esbuild.build({
  ...common,
  entryPoints: ["js/widget.js"],
  format: "esm",
  outfile: `${out}/widget.js`,
  define: { WORKLET_SOURCE: JSON.stringify(worklet.outputFiles[0].text) },
});

await esbuild.build({ ...common, entryPoints: ["js/widget.css"], outfile: `${out}/widget.css` });

await esbuild.build({ ...common, entryPoints: ["js/explorer.js", "js/explorer.css"], outdir: out, format: "esm" });
