import assert from "node:assert/strict";
import { test } from "node:test";
import { generalizedTime, parseGeneralizedTime } from "../../src/ldap/mapping.ts";
import type { Directory } from "../../src/services/directories.ts";
import { nextState, planSynchronization, settingsKey } from "../../src/services/sync/incremental.ts";

const base = {
  urls: ["ldap://ldap.example.test"],
  baseDn: "dc=example,dc=test",
  userBase: null,
  userFilter: "(objectClass=inetOrgPerson)",
  userScope: "sub",
  groupBase: null,
  groupFilter: "(objectClass=groupOfNames)",
  groupScope: "sub",
  attrUniqueId: "entryUUID",
  attrMember: "member",
  memberValues: "dn",
  syncState: null,
} as unknown as Directory;
const now = Date.parse("2026-12-07T12:00:00Z");
const withState = (state: object, changes: Partial<Directory> = {}) =>
  ({
    ...base,
    ...changes,
    syncState: { method: "timestamp", settings: settingsKey(base), ...state },
  }) as Directory;

test("the first synchronization, and one asked for, read everything", () => {
  assert.deepEqual(planSynchronization(base, "auto", { now }), {
    method: "full",
    why: "The first synchronization of this directory reads every entry.",
  });
  const known = withState({ highWater: now - 60_000, presenceAt: new Date(now).toISOString() });
  assert.equal(planSynchronization(known, "full", { now }).method, "full");
});

test("after one, what changed since its newest change less the margin; presence once a day", () => {
  const plan = planSynchronization(
    withState({ highWater: now - 60_000, presenceAt: new Date(now - 3_600_000).toISOString() }),
    "auto",
    { now },
  );
  assert.deepEqual(plan, {
    method: "incremental",
    via: "timestamp",
    since: now - 60_000 - 5 * 60_000,
    presence: false,
    why: "Entries changed since 2026-12-07 11:54:00 UTC (the directory's clock).",
  });
  const stale = planSynchronization(
    withState({ highWater: now, presenceAt: new Date(now - 25 * 3_600_000).toISOString() }),
    "auto",
    { now },
  );
  assert.equal(stale.method === "incremental" && stale.presence, true);
});

test("with the directory's content-synchronization cookies, a refresh from them; presence after held removals", () => {
  const cookies = { user: "dXNlcg==", group: "Z3JvdXA=" };
  const state = {
    method: "contentSync",
    highWater: null,
    cookies,
    presenceAt: new Date(now - 30 * 3_600_000).toISOString(),
  };
  assert.deepEqual(planSynchronization(withState(state), "auto", { now }), {
    method: "incremental",
    via: "contentSync",
    cookies,
    presence: false,
    why: "What changed since the last synchronization, deletions included, as the directory's content synchronization (RFC 4533) tells it.",
  });
  const afterHeld = planSynchronization(withState({ ...state, presenceAt: null }), "auto", { now });
  assert.equal(afterHeld.method === "incremental" && afterHeld.presence, true);
  assert.equal(
    planSynchronization(withState({ ...state, cookies: { user: "x" } }), "auto", { now }).method,
    "full",
  );
  const next = nextState(base, null, { highWater: null, presenceChecked: true, held: false, cookies });
  assert.deepEqual({ method: next.method, cookies: next.cookies }, { method: "contentSync", cookies });
  assert.equal(
    nextState(base, null, { highWater: 5, presenceChecked: true, held: false, cookies: null }).method,
    "timestamp",
  );
});

test("Active Directory: changes above the controller's update number, only from that same controller", () => {
  const sequence = { server: "CN=NTDS Settings,CN=DC1 0f1e2d3c-…", usn: "9007199254740993" };
  const state = {
    method: "usn",
    highWater: null,
    sequence,
    presenceAt: new Date(now - 3_600_000).toISOString(),
  };
  assert.deepEqual(
    planSynchronization(withState(state), "auto", {
      now,
      sequence: { ...sequence, usn: "9007199254741000" },
    }),
    {
      method: "incremental",
      via: "usn",
      above: "9007199254740993",
      presence: false,
      why: "Entries the domain controller changed since its update 9007199254740993, and the objects deleted since.",
    },
  );
  const other = planSynchronization(withState(state), "auto", {
    now,
    sequence: { ...sequence, server: "CN=DC2" },
  });
  assert.equal(other.method, "full");
  assert.match(other.why, /^Another domain controller answered/);
  assert.equal(planSynchronization(withState(state), "auto", { now, sequence: null }).method, "full");
  assert.equal(
    planSynchronization(withState({ ...state, sequence: { ...sequence, usn: "12a" } }), "auto", { now })
      .method,
    "full",
    "not a number: not trusted",
  );
  const next = nextState(base, null, {
    highWater: null,
    presenceChecked: true,
    held: false,
    cookies: null,
    sequence,
  });
  assert.deepEqual({ method: next.method, sequence: next.sequence }, { method: "usn", sequence });
});

test("a watermark read with other settings is not trusted", () => {
  const moved = withState({ highWater: now, presenceAt: null }, { userFilter: "(objectClass=person)" });
  assert.match(planSynchronization(moved, "auto", { now }).why, /filters or stable-id attribute changed/);
  const otherServer = withState(
    { highWater: now, presenceAt: null },
    { urls: ["ldap://other.example.test"] },
  );
  assert.equal(planSynchronization(otherServer, "auto", { now }).method, "full");
});

test("the next state keeps the newest change; held removals make the next run look for deletions", () => {
  const previous = {
    method: "timestamp" as const,
    highWater: 1000,
    settings: "x",
    presenceAt: "2026-12-01T00:00:00.000Z",
  };
  assert.equal(
    nextState(base, previous, { highWater: 500, presenceChecked: false, held: false, cookies: null })
      .highWater,
    1000,
  );
  assert.equal(
    nextState(base, previous, { highWater: 2000, presenceChecked: false, held: false, cookies: null })
      .highWater,
    2000,
  );
  assert.equal(
    nextState(base, previous, { highWater: null, presenceChecked: false, held: false, cookies: null })
      .presenceAt,
    previous.presenceAt,
  );
  assert.equal(
    nextState(base, previous, { highWater: null, presenceChecked: true, held: true, cookies: null })
      .presenceAt,
    null,
  );
});

test("GeneralizedTime both ways, with or without a fraction (Active Directory writes .0Z)", () => {
  const ms = Date.parse("2026-12-07T15:21:00Z");
  assert.equal(parseGeneralizedTime("20261207152100Z"), ms);
  assert.equal(parseGeneralizedTime("20261207152100.0Z"), ms);
  assert.equal(parseGeneralizedTime("2026-12-07"), null);
  assert.equal(generalizedTime(ms), "20261207152100Z");
  assert.equal(generalizedTime(ms, true), "20261207152100.0Z", "as Active Directory compares it");
});
