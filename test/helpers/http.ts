/** Requests as a browser (or htmx) sends them, and pages read as a user reads them. */
import assert from "node:assert/strict";
import type supertest from "supertest";

type Agent = ReturnType<typeof supertest.agent>;

/** The headers htmx 4 sends when it swaps one region. */
export function asFragment<T extends { set(name: string, value: string): T }>(request: T, target: string): T {
  return request.set("HX-Request", "true").set("HX-Request-Type", "partial").set("HX-Target", target);
}

/** A form post with the CSRF token and repeated fields (`pick=a&pick=b`), as a browser sends it. */
export function postForm(
  agent: Agent,
  url: string,
  csrf: string,
  body: Record<string, string | string[]> = {},
) {
  return agent
    .post(url)
    .type("form")
    .send(toQuery({ _csrf: csrf, ...body }));
}

/** Repeated fields (`user=1&user=2`) as urlencoded text, which supertest's object form can't express. */
function toQuery(body: Record<string, string | string[]>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(body)) {
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, v);
  }
  return params.toString();
}

/** Follows a 303 and returns the page it leads to. */
export async function follow(agent: Agent, response: { status: number; headers: Record<string, string> }) {
  assert.equal(response.status, 303, "expected a 303 redirect");
  const location = response.headers.location;
  assert.ok(location, "redirect without a location");
  return agent.get(location).expect(200);
}

/** The flash message on a page, as text. */
export function flashOf(html: string): string {
  const match = /<div class="flash flash-(\w+)"[^>]*>([\s\S]*?)<\/div>/.exec(html);
  return match ? `${match[1]}: ${decode(match[2] ?? "")}` : "";
}

/** The few entities Eta writes, decoded. */
export function decodeEntities(html: string): string {
  return html
    .replace(/&#39;/g, "'")
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}

/** A fragment's text: every tag a space, entities decoded, white space collapsed and trimmed. */
export function decode(html: string): string {
  return decodeEntities(html.replace(/<[^>]+>/g, " "))
    .replace(/\s+/g, " ")
    .trim();
}

/** A page's text as a user reads it: inline tags dropped (no space), other tags a space, entities decoded. */
export function text(html: string): string {
  return decodeEntities(
    html.replace(/<\/?(strong|em|span|a|time|code|b|i|abbr|label)\b[^>]*>/g, "").replace(/<[^>]+>/g, " "),
  ).replace(/\s+/g, " ");
}
