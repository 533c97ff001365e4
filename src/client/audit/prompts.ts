/**
 * The auditor's prompt sets: a built-in one (what an ordinary client of a chat model asks, short to
 * long, with and without a system message and earlier turns) and a reader for a set of one's own
 * in JSON lines (`nightjar audit --prompts FILE`). An audit is only as good as its disguise: a
 * prompt set that looks like nobody's traffic would let an agent tell audits apart by their size
 * or their shape, so the built-in set spreads over the padded size buckets real traffic uses.
 *
 * Prompts are content: the auditor never logs them (its events name a prompt by its index).
 */
import { z } from 'zod';
import { chatMessageSchema, describeIssues, LIMITS, NightjarError, withDefaults, type ChatMessage } from '../../shared/index.js';

/** One prompt of a set: the conversation an audit job sends. */
export interface AuditPrompt {
  /** The conversation, ending with the user's turn. */
  readonly messages: readonly ChatMessage[];
}

const user = (content: string): AuditPrompt => ({ messages: [{ role: 'user', content }] });
const withSystem = (system: string, content: string): AuditPrompt => ({
  messages: [
    { role: 'system', content: system },
    { role: 'user', content },
  ],
});

const LONG_CODE = `Here is a function from our billing service. It is slow on large inputs and a colleague says it
has a bug with refunds. Can you review it, explain what it does step by step, point out the bug,
and suggest a faster version?

function totals(events) {
  const out = {};
  for (const e of events) {
    if (!out[e.account]) out[e.account] = { charged: 0, refunded: 0, count: 0 };
    const row = out[e.account];
    if (e.kind === 'charge') row.charged += e.amount;
    if (e.kind === 'refund') row.charged -= e.amount;
    row.count = Object.keys(events.filter((x) => x.account === e.account)).length;
  }
  return Object.entries(out).sort((a, b) => b[1].charged - a[1].charged);
}`;

const LONG_EMAIL = `Please rewrite this email so it is polite but firm, and shorter. Keep the dates.

Hi Sam,

I wanted to follow up again about the invoice from March. We sent it on the 3rd, then a reminder on
the 17th, and another on the 2nd of April, and we still have not heard anything back from your team.
I understand things get busy but we really need this paid because it is now more than thirty days
overdue and our own suppliers are asking us for payment. If there is a problem with the invoice,
please let me know what it is so we can fix it. Otherwise could you confirm when we can expect the
payment? If we do not hear back by the end of next week we will have to pause work on the project
until it is settled, which I would really prefer not to do since the project is going well.

Thanks,
Priya`;

const LONG_NOTES = `Summarise these meeting notes in five bullet points and list the action items with owners.

- Q3 roadmap: mobile offline mode slipped two weeks; design review on Tuesday.
- Support volume up 18% after the pricing change; most tickets are about the new seat limits.
- Marta proposes a grace period of 14 days for teams over the limit; finance wants 7.
- Infra: database migration to the new cluster done for EU, US next Thursday night.
- Hiring: two backend roles open, one offer out; the designer role is on hold.
- Security review found two medium issues in the export feature; fixes due before launch.
- Jonas will draft the customer email about seat limits; Marta owns the grace period decision.
- Next sync moved to Monday because of the holiday.`;

const LONG_ARTICLE = `Read this article and answer: what are the three main arguments, and which is weakest? Quote the
sentence each one rests on.

City councils across the region are debating whether to close central streets to private cars on
weekends. Supporters point to the pilot in the old town last summer, when footfall in shops along
the closed streets rose by about a fifth compared with the same months a year before, and cafés
reported their best season in a decade. Opponents answer that the pilot ran during a heatwave that
brought more tourists than usual, and that shops on the streets just outside the closed area saw
their takings fall, as drivers who could no longer park nearby went to the out-of-town mall instead.

The second argument is about air. Monitoring stations on the closed streets recorded nitrogen
dioxide levels roughly forty percent lower on closed days than on open ones. Critics do not dispute
the figure, but they note that the traffic did not vanish: it moved to the ring road, where the
stations recorded a smaller but real increase, and where more people live than in the old town.
Whether the city as a whole breathed cleaner air depends on how one weighs those two groups, and the
council's own report does not try to.

The third argument is about safety. In the twelve closed weekends there were no collisions involving
pedestrians on the closed streets, against an average of three over the same period in the previous
five years. Here the numbers are small enough that chance could explain much of the difference, a
point the report makes in a footnote and the press release leaves out.

Finally there is the question of who decides. Residents of the old town were surveyed and a large
majority supported the closures; residents of the surrounding districts, who use the streets to reach
work and services, were not asked. Several councillors have said that a decision affecting the whole
city should not rest on a survey of one neighbourhood, and have asked for a city-wide consultation
before the scheme is made permanent. The mayor's office replied that a consultation would take a year
and that the pilot had already shown what it needed to show.

The council will vote next month. Whatever it decides, both sides agree on one thing: the pilot was
too short, and too unusual a summer, to settle the matter on the evidence alone.`;

/** The built-in prompt set: 49 prompts of many kinds and lengths. */
export const BUILT_IN_PROMPTS: readonly AuditPrompt[] = [
  user('Hi!'),
  user('What is the capital of Australia?'),
  user('Give me a synonym for "happy".'),
  user('How many days are there in a leap year?'),
  user('Translate "good morning" into Spanish, French and German.'),
  user('What does HTTP stand for?'),
  user('Write a haiku about autumn rain.'),
  user('Tell me a short joke about programmers.'),
  user('Is a tomato a fruit or a vegetable?'),
  user('Convert 72 degrees Fahrenheit to Celsius.'),
  user('What is the difference between "affect" and "effect"?'),
  user('Name three famous paintings by Vincent van Gogh.'),
  user('How do I reverse a string in Python?'),
  user('Explain recursion to a ten-year-old.'),
  user('Suggest a name for a small bakery that sells sourdough bread.'),
  user('What are the main causes of inflation? Keep it brief.'),
  user('Write a SQL query that returns the ten customers with the most orders.'),
  user('Give me a packing list for a three-day hiking trip in the mountains.'),
  user('What is the time complexity of binary search, and why?'),
  user('Write a limerick about a cat who learns to code.'),
  user('Explain the difference between TCP and UDP with an example of when to use each.'),
  user('I have eggs, spinach, feta and some old bread. What can I cook for dinner?'),
  user('Write a regular expression that matches a valid email address, and explain each part.'),
  user('What are some good ways to improve my sleep? I wake up at 4 am most nights.'),
  user('Draft a two-sentence product description for noise-cancelling headphones.'),
  user('Summarise the plot of Romeo and Juliet in one paragraph.'),
  user('Explain what a hash map is and how collisions are handled.'),
  user('Write a bash one-liner that counts the lines in every .ts file under src.'),
  user('What should I consider when choosing between renting and buying a flat?'),
  user('Write a short motivational message for a friend who is starting a new job on Monday.'),
  user('List the planets of the solar system in order from the sun, with one fact about each.'),
  user('Explain how vaccines train the immune system, in plain language.'),
  user('What is the Pythagorean theorem? Give an example with numbers.'),
  user('Write a JavaScript function that debounces another function, with a short explanation.'),
  user('Plan a one-week beginner running schedule that builds up to a 5 km run.'),
  withSystem('You are a concise assistant. Answer in one sentence.', 'Why is the sky blue?'),
  withSystem('You are a helpful travel agent.', 'I have four days in Lisbon in May. What should I see?'),
  withSystem('You are a senior software engineer reviewing code.', 'Is it a good idea to catch every exception and log it?'),
  withSystem('Answer as a friendly tutor. Use simple words.', 'What is photosynthesis?'),
  withSystem('You write marketing copy.', 'Write a tagline for an app that helps people drink more water.'),
  withSystem(
    'You are a careful assistant that explains its reasoning.',
    'A train leaves at 14:10 and arrives at 17:45. How long is the trip?',
  ),
  {
    messages: [
      { role: 'user', content: 'I am learning Go. What is a goroutine?' },
      { role: 'assistant', content: 'A goroutine is a lightweight thread managed by the Go runtime. You start one with the go keyword.' },
      { role: 'user', content: 'How do two goroutines share data safely?' },
    ],
  },
  {
    messages: [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: 'Recommend a science fiction novel.' },
      { role: 'assistant', content: 'You might enjoy "The Left Hand of Darkness" by Ursula K. Le Guin.' },
      { role: 'user', content: 'I have read it. Something more recent, please, and say why you picked it.' },
    ],
  },
  {
    messages: [
      { role: 'user', content: 'Can you help me write a cover letter?' },
      { role: 'assistant', content: 'Of course. What is the job, and what experience would you like to highlight?' },
      {
        role: 'user',
        content: 'A junior data analyst role. I did a statistics degree and an internship cleaning sales data in Excel and Python.',
      },
    ],
  },
  user(LONG_CODE),
  user(LONG_EMAIL),
  user(LONG_NOTES),
  user(LONG_ARTICLE),
  withSystem(
    'You are an assistant for a customer support team. Be empathetic, brief, and always offer a next step.',
    'A customer writes: "I was charged twice for my subscription this month and nobody answers my emails. ' +
      'I have been a customer for four years and I am close to cancelling." Draft a reply.',
  ),
];

/** Limits of {@link parsePromptLines}. */
export interface PromptFileOptions {
  /** Most prompts a file may hold. Defaults to 10 000. */
  maxPrompts?: number;
  /** Most bytes (UTF-8) one line may have. Defaults to 65 536. */
  maxLineBytes?: number;
  /** Most bytes the whole file may have. Defaults to 16 MiB. */
  maxFileBytes?: number;
}

/** The defaults of {@link PromptFileOptions}. */
export const PROMPT_FILE_DEFAULTS: Readonly<Required<PromptFileOptions>> = {
  maxPrompts: 10_000,
  maxLineBytes: 65_536,
  maxFileBytes: 16 * 1024 * 1024,
};

/**
 * One line of a prompt file: `{"prompt": "…", "system"?: "…"}` or `{"messages": [{role, content}, …]}`
 * (the conversation as the SDK takes it, ending with a user turn).
 */
const promptLineSchema = z.union([
  z.strictObject({ prompt: z.string().min(1), system: z.string().min(1).optional() }),
  z.strictObject({ messages: z.array(chatMessageSchema).min(1).max(LIMITS.maxMessages) }),
]);

/**
 * Reads a prompt set from JSON lines (blank lines and lines starting with `#` are skipped). Throws
 * NightjarError NJ_BAD_REQUEST naming the line (never its content) for a line that is not JSON, is
 * not a prompt, or is over a limit, and for a file with no prompt or over its limits.
 */
export function parsePromptLines(text: string, options: PromptFileOptions = {}): AuditPrompt[] {
  const o = withDefaults(PROMPT_FILE_DEFAULTS, options);
  const encoder = new TextEncoder();
  if (encoder.encode(text).length > o.maxFileBytes) {
    throw new NightjarError('NJ_BAD_REQUEST', `the prompt file is larger than ${o.maxFileBytes} bytes; split it`);
  }
  const prompts: AuditPrompt[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const where = `line ${i + 1} of the prompt file`;
    if (encoder.encode(line).length > o.maxLineBytes)
      throw new NightjarError('NJ_BAD_REQUEST', `${where} is longer than ${o.maxLineBytes} bytes`);
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch {
      throw new NightjarError('NJ_BAD_REQUEST', `${where} is not JSON; each line must be {"prompt": "…"} or {"messages": […]}`);
    }
    const parsed = promptLineSchema.safeParse(raw);
    if (!parsed.success) {
      throw new NightjarError(
        'NJ_BAD_REQUEST',
        `${where} is not a prompt (${describeIssues(parsed.error)}); each line must be ` +
          '{"prompt": "…", "system"?: "…"} or {"messages": [{"role": "user", "content": "…"}]}',
      );
    }
    const value = parsed.data;
    const messages: ChatMessage[] =
      'prompt' in value
        ? [
            ...(value.system === undefined ? [] : [{ role: 'system' as const, content: value.system }]),
            { role: 'user', content: value.prompt },
          ]
        : value.messages;
    if (messages.at(-1)!.role !== 'user') throw new NightjarError('NJ_BAD_REQUEST', `${where} does not end with a user message`);
    prompts.push({ messages });
    if (prompts.length > o.maxPrompts) throw new NightjarError('NJ_BAD_REQUEST', `the prompt file has more than ${o.maxPrompts} prompts`);
  }
  if (prompts.length === 0) throw new NightjarError('NJ_BAD_REQUEST', 'the prompt file holds no prompt');
  return prompts;
}
