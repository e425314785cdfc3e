/**
 * `roster`: Roster's API from a terminal or a script. ROSTER_URL and ROSTER_TOKEN say where and as
 * whom. Exit codes: 0 done, 1 a failed run or an error, 2 bad usage.
 */
import { Command, CommanderError, Option } from "commander";
import { ApiError, type Client, createClient, UsageError } from "./client.ts";
import { csvLine, printTable } from "./output.ts";
import { type Run, waitForRun } from "./wait.ts";

interface Directory {
  id: number;
  name: string;
  enabled: boolean;
  urls: string[];
  lastTest: { at: string; ok: boolean | null } | null;
}

interface Match {
  entry: { kind: "user" | "group"; externalId: string; dn: string; name: string };
  fullName: string;
  status: string;
  changes: string[];
  reason: string | null;
}

interface ListEntry {
  type: string;
  id: number;
  name: string;
  detail: string;
  email: string;
  kind: string;
  directoryName: string | null;
  enabled: boolean | null;
}

const out = (text: string): void => {
  process.stdout.write(`${text}\n`);
};
const json = (value: unknown): void => out(JSON.stringify(value, null, 2));

/** `<directory>`: an id, or a name (case-insensitive). */
async function findDirectory(client: Client, ref: string): Promise<Directory> {
  const { items } = await client.get<{ items: Directory[] }>("/directories");
  const found =
    items.find((d) => String(d.id) === ref) ?? items.find((d) => d.name.toLowerCase() === ref.toLowerCase());
  if (!found) {
    const names = items.map((d) => d.name).join(", ") || "none";
    throw new UsageError(`There is no directory “${ref}”. Directories: ${names}.`);
  }
  return found;
}

function statusText(match: Match): string {
  if (match.status === "update") return `update: ${match.changes.join(", ")}`;
  if (match.status === "conflict" || match.status === "invalid")
    return `${match.status}: ${match.reason ?? ""}`;
  return match.status === "unchanged" ? "up to date" : match.status;
}

function runSummary(run: Run): string {
  const c = run.counts;
  return `${run.kind === "synchronization" ? "Synchronization" : "Import"} #${run.id} ${run.status}: ${c.created} created, ${c.updated} updated, ${c.unchanged} unchanged, ${c.skipped} skipped, ${c.failed} failed${run.error ? ` — ${run.error}` : ""}`;
}

/** 0 when the run finished well (a synchronization holding removals for review included), else 1. */
function exitCodeOf(run: Run): number {
  return run.status === "succeeded" || run.status === "held" ? 0 : 1;
}

async function getRun(client: Client, id: string): Promise<Run> {
  if (!/^\d+$/.test(id)) throw new UsageError(`A run id is a number, not “${id}”.`);
  try {
    return await client.get<Run>(`/imports/${id}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return client.get<Run>(`/synchronizations/${id}`);
    throw err;
  }
}

async function finishRun(
  client: Client,
  run: Run,
  options: { wait?: boolean; json?: boolean },
): Promise<number> {
  if (!options.wait) {
    if (options.json) json(run);
    else
      out(
        `${run.kind === "synchronization" ? "Synchronization" : "Import"} #${run.id} is ${run.status}. Follow it with: roster run ${run.id}`,
      );
    return 0;
  }
  const final = await waitForRun(client, run, { stream: process.stderr });
  if (options.json) json(final);
  else out(runSummary(final));
  if (final.status === "held")
    process.stderr.write("Removals are held for review: apply or discard them on the run's page.\n");
  return exitCodeOf(final);
}

export function buildProgram(): Command {
  const program = new Command("roster")
    .description(
      "Roster's API from the command line. Set ROSTER_URL and ROSTER_TOKEN (an API token from My account).",
    )
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  program.configureOutput({ writeErr: (text) => process.stderr.write(text) });
  const client = () => createClient();
  const jsonOption = new Option("--json", "print JSON instead of a table");

  program
    .command("directories")
    .description("list the directories")
    .addOption(jsonOption)
    .action(async (options: { json?: boolean }) => {
      const { items } = await client().get<{ items: Directory[] }>("/directories");
      if (options.json) return json(items);
      printTable(
        ["ID", "NAME", "ENABLED", "SERVER", "LAST TEST"],
        items.map((d) => [
          String(d.id),
          d.name,
          d.enabled ? "yes" : "no",
          d.urls.join(" "),
          d.lastTest ? `${d.lastTest.ok ? "ok" : "failed"} ${d.lastTest.at}` : "never",
        ]),
      );
    });

  program
    .command("search")
    .description("search a directory: the matches an import would take (a dry run)")
    .argument("<directory>", "directory id or name")
    .argument("<query>", "a name, or a raw LDAP filter starting with (")
    .addOption(
      new Option("--kind <kind>", "what to search for").choices(["users", "groups", "both"]).default("both"),
    )
    .option("--status", "say what importing each match would do")
    .option("--limit <n>", "at most this many matches", "50")
    .addOption(jsonOption)
    .action(
      async (
        ref: string,
        query: string,
        options: { kind: string; status?: boolean; limit: string; json?: boolean },
      ) => {
        const api = client();
        const directory = await findDirectory(api, ref);
        const limit = positiveInt(options.limit, "--limit");
        const page = await api.get<{ items: Match[]; total: number }>(
          `/directories/${directory.id}/entries`,
          {
            q: query,
            kind: options.kind,
            limit: Math.min(limit, 200),
          },
        );
        if (options.json) return json(page);
        const head = ["KIND", "NAME", "FULL NAME", "DN", ...(options.status ? ["STATUS"] : [])];
        printTable(
          head,
          page.items.map((m) => [
            m.entry.kind,
            m.entry.name,
            m.fullName,
            m.entry.dn,
            ...(options.status ? [statusText(m)] : []),
          ]),
        );
        process.stderr.write(`${page.items.length} of ${page.total} matches shown.\n`);
      },
    );

  program
    .command("import")
    .description("import entries, or every match of a query, from a directory")
    .argument("<directory>", "directory id or name")
    .option("--query <query>", "import every match of this search")
    .option("--entry <dn...>", "import the entries with these DNs")
    .addOption(
      new Option("--kind <kind>", "with --query: what to import")
        .choices(["users", "groups", "both"])
        .default("both"),
    )
    .option(
      "--copy-roles-from <subject>",
      "copy this user's or group's roles onto the imported users (a name, user:<id> or group:<id>)",
    )
    .option("--wait", "wait for the import to end, showing its progress")
    .addOption(jsonOption)
    .action(
      async (
        ref: string,
        options: {
          query?: string;
          entry?: string[];
          kind: string;
          copyRolesFrom?: string;
          wait?: boolean;
          json?: boolean;
        },
      ) => {
        if ((options.query === undefined) === (options.entry === undefined)) {
          throw new UsageError("Give either --query or --entry (one or more DNs).");
        }
        const api = client();
        const directory = await findDirectory(api, ref);
        const run = await api.post<Run>("/imports", {
          directoryId: directory.id,
          ...(options.query !== undefined ? { query: { text: options.query, kind: options.kind } } : {}),
          ...(options.entry ? { entries: options.entry.map((dn) => ({ dn })) } : {}),
          ...(options.copyRolesFrom ? { copyRolesFrom: options.copyRolesFrom } : {}),
        });
        process.exitCode = await finishRun(api, run, options);
      },
    );

  program
    .command("runs")
    .description("list the latest imports and synchronizations")
    .option("--directory <directory>", "only this directory's (id or name)")
    .option("--limit <n>", "how many", "20")
    .addOption(jsonOption)
    .action(async (options: { directory?: string; limit: string; json?: boolean }) => {
      const api = client();
      const limit = Math.min(positiveInt(options.limit, "--limit"), 200);
      const directoryId = options.directory ? (await findDirectory(api, options.directory)).id : undefined;
      const [imports, syncs] = await Promise.all(
        ["/imports", "/synchronizations"].map((path) =>
          api.get<{ items: Run[] }>(path, { directoryId, limit }),
        ),
      );
      const runs = [...(imports?.items ?? []), ...(syncs?.items ?? [])]
        .sort((a, b) => b.id - a.id)
        .slice(0, limit);
      if (options.json) return json(runs);
      printTable(
        ["ID", "KIND", "DIRECTORY", "STATUS", "CREATED", "UPDATED", "FAILED", "STARTED"],
        runs.map((r) => [
          String(r.id),
          r.kind,
          r.directory.name,
          r.status,
          String(r.counts.created),
          String(r.counts.updated),
          String(r.counts.failed),
          r.createdAt,
        ]),
      );
    });

  program
    .command("run")
    .description("show a run: status, progress and counts")
    .argument("<id>", "the run's id")
    .option("--report", "also list the report: what happened to each entry not simply created")
    .option("--wait", "wait for the run to end, showing its progress")
    .addOption(jsonOption)
    .action(async (id: string, options: { report?: boolean; wait?: boolean; json?: boolean }) => {
      const api = client();
      let run = await getRun(api, id);
      if (options.wait) run = await waitForRun(api, run, { stream: process.stderr });
      const report = [];
      if (options.report) {
        const base = run.kind === "synchronization" ? "/synchronizations" : "/imports";
        for await (const entry of api.all<{
          outcome: string;
          kind: string;
          name: string;
          dn: string;
          reason: string;
        }>(`${base}/${run.id}/entries`, { limit: 200 }))
          report.push(entry);
      }
      if (options.json) json(options.report ? { ...run, report } : run);
      else {
        out(runSummary(run));
        if (run.progress.total !== null) out(`Progress: ${run.progress.processed} of ${run.progress.total}`);
        if (options.report) {
          if (report.length === 0)
            out("The report is empty: every entry was simply created, or nothing was read.");
          else
            printTable(
              ["OUTCOME", "KIND", "NAME", "REASON"],
              report.map((e) => [e.outcome, e.kind, e.name, e.reason]),
            );
        }
      }
      process.exitCode = run.finished ? exitCodeOf(run) : 0;
    });

  program
    .command("sync")
    .description("synchronize a directory now")
    .argument("<directory>", "directory id or name")
    .option("--full", "read every entry, not only what changed")
    .option("--wait", "wait for the synchronization to end, showing its progress")
    .addOption(jsonOption)
    .action(async (ref: string, options: { full?: boolean; wait?: boolean; json?: boolean }) => {
      const api = client();
      const directory = await findDirectory(api, ref);
      const run = await api.post<Run>("/synchronizations", {
        directoryId: directory.id,
        full: options.full === true,
      });
      process.exitCode = await finishRun(api, run, options);
    });

  program
    .command("users")
    .description("list users, as the Users page does (every match, page after page)")
    .option("--search <text>", "only those whose name, full name or email contains this")
    .addOption(
      new Option("--filter <kind>", "which users").choices(["all", "internal", "external"]).default("all"),
    )
    .option("--csv", "print CSV")
    .addOption(jsonOption)
    .action(async (options: { search?: string; filter: string; csv?: boolean; json?: boolean }) => {
      const api = client();
      const query = { q: options.search, filter: options.filter, limit: 200 };
      const rows: ListEntry[] = [];
      if (options.csv) out(csvLine(["id", "username", "full_name", "email", "kind", "directory", "enabled"]));
      for await (const user of api.all<ListEntry>("/users", query)) {
        if (options.csv) {
          out(
            csvLine([
              String(user.id),
              user.name,
              user.detail,
              user.email,
              user.kind,
              user.directoryName ?? "",
              String(user.enabled),
            ]),
          );
        } else rows.push(user);
      }
      if (options.csv) return;
      if (options.json) return json(rows);
      printTable(
        ["ID", "USERNAME", "FULL NAME", "EMAIL", "KIND", "DIRECTORY", "SIGN-IN"],
        rows.map((u) => [
          String(u.id),
          u.name,
          u.detail,
          u.email,
          u.kind,
          u.directoryName ?? "",
          u.enabled ? "enabled" : "disabled",
        ]),
      );
    });

  return program;
}

function positiveInt(value: string, option: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${option} takes a whole number of 1 or more.`);
  return n;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help asked for is success; help shown because no command was given is bad usage.
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version") return 0;
      return 2;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`roster: ${err.message}\n`);
      return 2;
    }
    if (err instanceof ApiError) {
      process.stderr.write(`roster: ${err.message}\n`);
      for (const [field, message] of Object.entries(err.errors))
        process.stderr.write(`  ${field}: ${message}\n`);
      return 1;
    }
    process.stderr.write(`roster: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
