// Evaluate GitHub Actions expressions with GitHub's own @actions/expressions, for the local
// workflow runner (tests/workflows/runner/expressions.py). One JSON request per stdin line, one
// JSON answer per stdout line:
//
//   {"kind": "template", "text": "a-${{ inputs.x }}", "contexts": {...}, "status": "success"}
//   {"kind": "condition", "text": "always() && inputs.x", "contexts": {...}, "status": "failure"}
//   -> {"value": <JSON>} or {"error": "..."}
//
// template: a value whose whole text is one ${{ }} keeps its type (fromJSON gives a list, a
// comparison a boolean); otherwise every ${{ }} is replaced by its string form, as GitHub does.
// condition: an `if:` (with or without ${{ }}); without a status function it means
// `success() && (...)`; the answer is a boolean. `status` is what success(), failure() and
// cancelled() report: "success", "failure" or "cancelled". hashFiles is not provided: the
// runner has no use for it, and an expression calling it is an error rather than a guess.
import { createInterface } from "node:readline";
import { Evaluator, Lexer, Parser, data } from "@actions/expressions";
import { truthy } from "@actions/expressions/result";

const CONTEXTS = ["github", "env", "vars", "job", "jobs", "steps", "runner", "secrets", "strategy", "matrix", "needs", "inputs"];
const STATUS = ["always", "success", "failure", "cancelled"];

function statusFunctions(status) {
  const result = { always: true, success: status === "success", failure: status === "failure", cancelled: status === "cancelled" };
  return new Map(STATUS.map((name) => [name, { name, minArgs: 0, maxArgs: 0, call: () => new data.BooleanData(result[name]) }]));
}

function parse(expression) {
  const { tokens } = new Lexer(expression).lex();
  return new Parser(tokens, CONTEXTS, STATUS.map((name) => ({ name, minArgs: 0, maxArgs: 0 }))).parse();
}

function callsStatus(node) {
  if (!node || typeof node !== "object") return false;
  if (node.constructor?.name === "FunctionCall" && STATUS.includes(node.functionName.lexeme.toLowerCase())) return true;
  return Object.values(node).some((v) => (Array.isArray(v) ? v.some(callsStatus) : v && typeof v === "object" && callsStatus(v)));
}

// The parts of a template: literal text and the expressions between ${{ and the first }} that is
// not inside a '...' string literal.
function split(text) {
  const parts = [];
  let at = 0;
  for (;;) {
    const open = text.indexOf("${{", at);
    if (open < 0) break;
    if (open > at) parts.push({ literal: text.slice(at, open) });
    let i = open + 3;
    let quoted = false;
    while (i < text.length && (quoted || !text.startsWith("}}", i))) {
      if (text[i] === "'") quoted = !quoted;
      i += 1;
    }
    if (i >= text.length) throw new Error(`unclosed expression in ${JSON.stringify(text)}`);
    parts.push({ expression: text.slice(open + 3, i).trim() });
    at = i + 2;
  }
  if (at < text.length) parts.push({ literal: text.slice(at) });
  return parts;
}

function evaluate(expression, contexts, functions) {
  return new Evaluator(parse(expression), contexts, functions).evaluate();
}

function answer(request) {
  const contexts = JSON.parse(JSON.stringify(request.contexts), data.reviver);
  const functions = statusFunctions(request.status);
  if (request.kind === "condition") {
    const parts = split(request.text.trim());
    const expression = parts.length === 1 && parts[0].expression !== undefined ? parts[0].expression : request.text.trim();
    const tree = parse(expression);
    const value = truthy(new Evaluator(tree, contexts, functions).evaluate());
    return callsStatus(tree) ? value : request.status === "success" && value;
  }
  const parts = split(request.text);
  if (parts.length === 1 && parts[0].expression !== undefined) {
    return JSON.parse(JSON.stringify(evaluate(parts[0].expression, contexts, functions), data.replacer));
  }
  return parts.map((p) => (p.literal !== undefined ? p.literal : evaluate(p.expression, contexts, functions).coerceString())).join("");
}

for await (const line of createInterface({ input: process.stdin })) {
  let reply;
  try {
    reply = { value: answer(JSON.parse(line)) };
  } catch (err) {
    reply = { error: err.message ?? String(err) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
}
