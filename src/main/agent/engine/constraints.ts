/**
 * Tools and response formats at the engine: how they are rendered into the prompt, which grammar
 * each mode generates under, and how a generated call is read back. The agent never runs a
 * function: it returns the call.
 *
 * Modes:
 * - `text`: free text (no tools, or toolChoice 'none'); a response format puts it under a grammar.
 * - `call`: the model must call: a named function (the grammar of its parameters; what is generated
 *   is exactly the arguments) or, for 'required', any of them (the grammar of
 *   `{"name": <one of the names>, "arguments": <that function's parameters>}`).
 * - `auto`: free text, unless the reply's first token opens a JSON object: then that token is
 *   taken back and the reply is generated again from there under the grammar of 'required'.
 *
 * Tools are described to the model in a system message in the plain JSON call format above (the
 * format llama.cpp's server calls "generic"), so every chat template can render them; earlier
 * calls are rendered in the same format and their results as user turns.
 */
import type { ChatHistoryItem } from 'node-llama-cpp';
import { LIMITS, NightjarError, type ChatMessage, type JsonSchemaObject, type Tool, type ToolCall } from '../../../shared/index.js';
import type { ReplyConstraints } from './types.js';

/** How one reply is generated. */
export type ConstraintMode =
  { kind: 'text'; schema: JsonSchemaObject | 'json' | null } | { kind: 'call'; name: string | null } | { kind: 'auto' };

/**
 * The mode of a request. A response format with tools in 'auto' keeps to the format (the reply is
 * text in that shape; the model is not offered the tools' call format as a way out).
 */
export function constraintMode(c: ReplyConstraints): ConstraintMode {
  const format = c.responseFormat;
  const schema = format === undefined ? null : format.type === 'json_object' ? 'json' : format.schema;
  const choice = c.toolChoice ?? 'auto';
  if (c.tools === undefined || c.tools.length === 0 || choice === 'none') return { kind: 'text', schema };
  if (choice === 'required') return { kind: 'call', name: null };
  if (typeof choice === 'object') return { kind: 'call', name: choice.name };
  return schema === null ? { kind: 'auto' } : { kind: 'text', schema };
}

/** The JSON schema a call of mode `call` (or `auto`, once it calls) is generated under. */
export function callSchema(tools: readonly Tool[], name: string | null): JsonSchemaObject {
  if (name !== null) return tools.find((t) => t.name === name)!.parameters;
  const one = (t: Tool): JsonSchemaObject => ({
    type: 'object',
    properties: { name: { const: t.name }, arguments: t.parameters },
    required: ['name', 'arguments'],
  });
  return tools.length === 1 ? one(tools[0]!) : { oneOf: tools.map(one) };
}

/** The system text that offers the tools (and says what the format asks), or null when there is none. */
export function constraintsPrompt(c: ReplyConstraints, mode: ConstraintMode): string | null {
  const lines: string[] = [];
  if (c.tools !== undefined && c.tools.length > 0 && c.toolChoice !== 'none') {
    lines.push(
      'You can call these functions. To call one, reply with nothing but a JSON object ' +
        '{"name": <the function name>, "arguments": <an object of its parameters>}.',
    );
    for (const t of c.tools) {
      lines.push(`- ${t.name}${t.description ? `: ${t.description}` : ''}. Parameters (JSON schema): ${JSON.stringify(t.parameters)}`);
    }
    if (mode.kind === 'call') lines.push(mode.name === null ? 'Call one of these functions now.' : `Call the function ${mode.name} now.`);
  }
  if (mode.kind === 'text' && mode.schema !== null) {
    lines.push(
      mode.schema === 'json'
        ? 'Reply with a JSON object.'
        : `Reply with a JSON object that follows this JSON schema: ${JSON.stringify(mode.schema)}`,
    );
  }
  return lines.length === 0 ? null : lines.join('\n');
}

function callText(call: ToolCall): string {
  return `{"name": ${JSON.stringify(call.name)}, "arguments": ${call.arguments}}`;
}

/**
 * The chat history node-llama-cpp's chat wrapper renders: the constraints' system text first (after
 * the request's own system messages), assistant calls in the call format, tool results as user turns.
 */
export function historyOf(messages: readonly ChatMessage[], system: string | null): ChatHistoryItem[] {
  const names = new Map<string, string>();
  for (const m of messages) for (const call of m.toolCalls ?? []) names.set(call.id, call.name);
  const history: ChatHistoryItem[] = [];
  let systemDone = system === null;
  for (const m of messages) {
    if (!systemDone && m.role !== 'system') {
      history.push({ type: 'system', text: system! });
      systemDone = true;
    }
    if (m.role === 'system') history.push({ type: 'system', text: m.content });
    else if (m.role === 'user') history.push({ type: 'user', text: m.content });
    else if (m.role === 'tool') {
      const name = m.toolCallId === undefined ? undefined : names.get(m.toolCallId);
      history.push({ type: 'user', text: `Result of the function call ${m.toolCallId ?? ''}${name ? ` (${name})` : ''}: ${m.content}` });
    } else {
      const calls = (m.toolCalls ?? []).map(callText);
      history.push({ type: 'model', response: [[m.content, ...calls].filter((t) => t !== '').join('\n')] });
    }
  }
  if (!systemDone) history.push({ type: 'system', text: system! });
  return history;
}

/** What ends a grammar-constrained reply's text: node-llama-cpp's JSON-schema grammars end in four newlines. */
export const GRAMMAR_END_TEXT = '\n\n\n\n';

/**
 * Reads a complete generated call. `text` is what was generated under {@link callSchema}: for a
 * named call its arguments, else `{"name": …, "arguments": …}`, whose arguments are kept exactly as
 * written. Throws NJ_ENGINE_FAILED if it does not parse (the grammar should have made sure).
 */
export function readCall(text: string, name: string | null, id: string): ToolCall {
  const trimmed = text.trim();
  try {
    if (name !== null) {
      JSON.parse(trimmed);
      return { id, name, arguments: bounded(trimmed) };
    }
    const parsed = JSON.parse(trimmed) as { name?: unknown; arguments?: unknown };
    if (typeof parsed.name !== 'string') throw new Error('no name');
    // The arguments as written: after the name (a plain identifier), the key "arguments", a colon,
    // up to the object's last brace.
    const key = trimmed.indexOf('"arguments"', trimmed.indexOf(JSON.stringify(parsed.name)));
    const start = trimmed.slice(key + '"arguments"'.length).search(/[^\s:]/) + key + '"arguments"'.length;
    const written = trimmed.slice(start, trimmed.lastIndexOf('}')).trim();
    let args = JSON.stringify(parsed.arguments);
    try {
      if (JSON.stringify(JSON.parse(written)) === args) args = written;
    } catch {
      // Keep the re-serialised arguments.
    }
    return { id, name: parsed.name, arguments: bounded(args) };
  } catch (error) {
    throw new NightjarError(
      'NJ_ENGINE_FAILED',
      `The generated tool call does not parse (${error instanceof Error ? error.message : String(error)}).`,
    );
  }
}

function bounded(args: string): string {
  if (args.length > LIMITS.maxToolArgumentsLength) {
    throw new NightjarError(
      'NJ_ENGINE_FAILED',
      `The generated arguments exceed ${LIMITS.maxToolArgumentsLength} characters; ask for fewer tokens.`,
    );
  }
  return args;
}
