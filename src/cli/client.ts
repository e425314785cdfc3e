/** A small client for Roster's API: the token in a header, problem details turned into errors. */

export class UsageError extends Error {
  override name = "UsageError";
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export interface Client {
  get<T>(path: string, query?: Record<string, string | number | undefined>): Promise<T>;
  post<T>(path: string, body?: unknown): Promise<T>;
  /** Every item of a cursor-paged list, following `next` to the end. */
  all<T>(path: string, query?: Record<string, string | number | undefined>): AsyncGenerator<T>;
}

export function createClient(env: NodeJS.ProcessEnv = process.env): Client {
  const base = env.ROSTER_URL?.trim();
  const token = env.ROSTER_TOKEN?.trim();
  if (!base) throw new UsageError("Set ROSTER_URL to the address of Roster, e.g. https://roster.example.org");
  if (!token) throw new UsageError("Set ROSTER_TOKEN to an API token (create one on My account in Roster).");
  let root: URL;
  try {
    root = new URL(base.endsWith("/") ? base : `${base}/`);
  } catch {
    throw new UsageError(`ROSTER_URL is not an address: ${base}`);
  }

  const request = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const url = new URL(path.startsWith("/api/") ? path.slice(1) : `api/v1${path}`, root);
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: {
          Authorization: `Bearer ${token}`,
          Accept: "application/json",
          ...(body === undefined ? {} : { "Content-Type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        redirect: "manual",
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new ApiError(
        0,
        `Can't reach Roster at ${root.origin}: ${cause?.code ?? cause?.message ?? String(err)}`,
      );
    }
    const text = await response.text();
    const data = text ? safeJson(text) : undefined;
    if (!response.ok) {
      const problem = (data ?? {}) as { title?: string; detail?: string; errors?: Record<string, string> };
      const retry = response.headers.get("Retry-After");
      const message = [problem.title ?? `HTTP ${response.status}`, problem.detail].filter(Boolean).join(": ");
      throw new ApiError(
        response.status,
        retry ? `${message} (retry after ${retry} s)` : message,
        problem.errors ?? {},
      );
    }
    return data as T;
  };

  const withQuery = (path: string, query: Record<string, string | number | undefined> = {}) => {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query))
      if (value !== undefined && value !== "") params.set(key, String(value));
    const text = params.toString();
    return text ? `${path}?${text}` : path;
  };

  return {
    get: (path, query) => request("GET", withQuery(path, query)),
    post: (path, body) => request("POST", path, body ?? {}),
    async *all<T>(path: string, query?: Record<string, string | number | undefined>) {
      let next: string | null = withQuery(path, query);
      while (next) {
        const page: { items: T[]; next: string | null } = await request("GET", next);
        yield* page.items;
        next = page.next;
      }
    },
  };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { title: text.slice(0, 200) };
  }
}
