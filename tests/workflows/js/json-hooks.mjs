// The workflow-parser's dist imports its JSON schemas without an import attribute (fine for
// bundlers, refused by Node): this load hook serves those files as JSON modules.
import { readFile } from "node:fs/promises";

export async function load(url, context, nextLoad) {
  if (url.endsWith(".json")) {
    return { format: "json", source: await readFile(new URL(url), "utf8"), shortCircuit: true };
  }
  return nextLoad(url, context);
}
