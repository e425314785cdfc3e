import type { NextFunction, Request, Response } from "express";
import type { Db } from "../../db/client.ts";
import type { DirectoryLogger } from "../../ldap/client.ts";
import { synchronizeGroup } from "../../services/directory-users.ts";
import {
  addMembers,
  addSubgroup,
  createInternalGroup,
  type GroupDetails,
  getGroup,
  membersOf,
  parentsOf,
  removeMember,
  removeSubgroup,
  subgroupsOf,
  updateGroup,
} from "../../services/groups.ts";
import type { SecretBox } from "../../services/secrets.ts";
import { type ListScope, listEntries } from "../../services/user-list.ts";
import { usersByIds } from "../../services/users.ts";
import { redirectAfterPost } from "../flash.ts";
import { type FieldErrors, parseForm, renderInvalid } from "../forms/form.ts";
import { groupSchema } from "../forms/groups.ts";
import { loaded, paramLoader } from "../loaders.ts";
import { render } from "../render.ts";
import {
  actorOf,
  errorsOf,
  idParam,
  linkIsGone,
  manyIds,
  queryText,
  redirectWithError,
  viewHelpers,
} from "../request-helpers.ts";
import { assignmentHandlers, loadAssignmentsView } from "./roles.ts";

export interface GroupsRouteDeps {
  db: Db;
  secretBox: SecretBox;
  directoryLogger?: DirectoryLogger;
}

const PICKER_SIZE = 20;

/** Groups: new group, one group's page, members, subgroups, synchronization, role assignments. */
export function groupHandlers(deps: GroupsRouteDeps) {
  const { db } = deps;
  const assignments = assignmentHandlers({
    db,
    subjectOf: (res) => {
      const group = loaded(res, "group");
      return { type: "group", id: group.id, name: group.name, path: `/groups/${group.id}` };
    },
    renderInvalid: (req, res, errors, values) =>
      renderDetails(req, res, loaded(res, "group"), 422, errors, values),
  });

  async function renderDetails(
    req: Request,
    res: Response,
    group: GroupDetails,
    status: number,
    errors: FieldErrors,
    values: Record<string, unknown>,
  ) {
    const after = queryText(req.query.after, 300) || null;
    const [members, subgroups, parents, assignmentsView] = await Promise.all([
      membersOf(db, group.id, { after }),
      subgroupsOf(db, group.id),
      parentsOf(db, group.id),
      loadAssignmentsView(db, { type: "group", id: group.id }, `/groups/${group.id}`),
    ]);
    const data = {
      title: group.name,
      group,
      members,
      membersAfter: after,
      focusMembers: linkIsGone(req, {
        "members-next": members.next !== null,
        "members-previous": after !== null,
      }),
      nextMembersHref: members.next
        ? `/groups/${group.id}?after=${encodeURIComponent(members.next)}#group-members`
        : null,
      firstMembersHref: after ? `/groups/${group.id}#group-members` : null,
      subgroups,
      parents,
      ...assignmentsView,
      errors,
      values: { name: group.name, description: group.description, ...values },
      ...viewHelpers,
    };
    if (status === 422) return renderInvalid(req, res, "groups/show", data);
    render(req, res, "groups/show", data, { status, partial: "groups/_members" });
  }

  async function renderPicker(
    req: Request,
    res: Response,
    group: GroupDetails,
    what: "members" | "subgroups",
    status: number,
    errors: FieldErrors,
  ) {
    if (group.kind === "external") {
      return redirectWithError(
        req,
        res,
        `/groups/${group.id}`,
        `The members of ${group.name} come from its directory: synchronize the group instead.`,
      );
    }
    const q = queryText(req.method === "GET" ? req.query.q : req.body?.q);
    const scope: ListScope = what === "members" ? "users" : "groups";
    const page = await listEntries(db, { filter: scope, search: q, sort: "name", pageSize: PICKER_SIZE });
    const options = page.entries.filter((e) => !(e.type === "group" && e.id === group.id));
    const data = {
      title: what === "members" ? `Add members to ${group.name}` : `Add a subgroup to ${group.name}`,
      group,
      what,
      q,
      options,
      more: page.next !== null,
      errors,
      values: {},
      ...viewHelpers,
    };
    if (status === 422) return renderInvalid(req, res, "groups/picker", data, "groups/_picker-options");
    render(req, res, "groups/picker", data, { status, partial: "groups/_picker-options" });
  }

  async function renderMembershipPicker(req: Request, res: Response, status: number, errors: FieldErrors) {
    const source = req.method === "GET" ? req.query : req.body;
    const selected = await usersByIds(db, manyIds(source?.user));
    const q = queryText(source?.q);
    const page = await listEntries(db, {
      filter: "internal-groups",
      search: q,
      sort: "name",
      pageSize: PICKER_SIZE,
    });
    const data = {
      title: "Add users to a group",
      selected,
      q,
      options: page.entries,
      more: page.next !== null,
      errors,
      values: {},
      ...viewHelpers,
    };
    if (status === 422) {
      return renderInvalid(req, res, "groups/membership", data, "groups/_membership-options");
    }
    render(req, res, "groups/membership", data, { status, partial: "groups/_membership-options" });
  }

  return {
    load: paramLoader("group", (id) => getGroup(db, id)),

    newForm(req: Request, res: Response) {
      render(req, res, "groups/new", {
        title: "New group",
        errors: {},
        values: { name: "", description: "" },
      });
    },

    async create(req: Request, res: Response) {
      const values = { name: String(req.body?.name ?? ""), description: String(req.body?.description ?? "") };
      const form = parseForm(groupSchema, req.body);
      const invalid = (errors: FieldErrors) =>
        renderInvalid(req, res, "groups/new", { title: "New group", errors, values });
      if (!form.ok) return invalid(form.errors);
      const outcome = await createInternalGroup(db, actorOf(res), form.data);
      if (!outcome.ok) return invalid(errorsOf(outcome));
      redirectAfterPost(req, res, `/groups/${outcome.value.id}`, `Group ${outcome.value.name} was created.`);
    },

    async show(req: Request, res: Response) {
      await renderDetails(req, res, loaded(res, "group"), 200, {}, {});
    },

    async update(req: Request, res: Response) {
      const group = loaded(res, "group");
      const values = { name: String(req.body?.name ?? ""), description: String(req.body?.description ?? "") };
      const form = parseForm(groupSchema, req.body);
      if (!form.ok) return renderDetails(req, res, group, 422, form.errors, values);
      const outcome = await updateGroup(db, actorOf(res), group.id, form.data);
      if (!outcome.ok) return renderDetails(req, res, group, 422, errorsOf(outcome), values);
      redirectAfterPost(req, res, `/groups/${group.id}`, `Group ${outcome.value.name} was saved.`);
    },

    /** A picker of users (works without JavaScript: a GET form); the chosen ones are then added. */
    async memberPicker(req: Request, res: Response) {
      await renderPicker(req, res, loaded(res, "group"), "members", 200, {});
    },

    async addMembers(req: Request, res: Response) {
      const group = loaded(res, "group");
      const ids = manyIds(req.body?.user);
      if (ids.length === 0)
        return renderPicker(req, res, group, "members", 422, { user: "Choose at least one user." });
      const outcome = await addMembers(db, actorOf(res), group.id, ids);
      if (!outcome.ok) return redirectWithError(req, res, `/groups/${group.id}`, outcome.message);
      redirectAfterPost(req, res, `/groups/${group.id}#group-members`, membershipMessage(outcome.value));
    },

    async removeMember(req: Request, res: Response, next: NextFunction) {
      const group = loaded(res, "group");
      const userId = idParam(req, "memberId");
      if (userId === null) return next();
      const outcome = await removeMember(db, actorOf(res), group.id, userId);
      if (!outcome.ok)
        return redirectWithError(req, res, `/groups/${group.id}#group-members`, outcome.message);
      redirectAfterPost(
        req,
        res,
        `/groups/${group.id}#group-members`,
        `${outcome.value.username} was removed from ${group.name}.`,
      );
    },

    async subgroupPicker(req: Request, res: Response) {
      await renderPicker(req, res, loaded(res, "group"), "subgroups", 200, {});
    },

    async addSubgroup(req: Request, res: Response) {
      const group = loaded(res, "group");
      const [childId] = manyIds(req.body?.subgroup);
      if (childId === undefined) {
        return renderPicker(req, res, group, "subgroups", 422, { subgroup: "Choose a group." });
      }
      const outcome = await addSubgroup(db, actorOf(res), group.id, childId);
      if (!outcome.ok && outcome.field === "subgroup") {
        return renderPicker(req, res, group, "subgroups", 422, errorsOf(outcome));
      }
      if (!outcome.ok) return redirectWithError(req, res, `/groups/${group.id}`, outcome.message);
      const message = outcome.value.created
        ? `${outcome.value.subgroup} is now a subgroup of ${group.name}.`
        : `${outcome.value.subgroup} was already a subgroup of ${group.name}.`;
      redirectAfterPost(req, res, `/groups/${group.id}#subgroups`, message);
    },

    async removeSubgroup(req: Request, res: Response, next: NextFunction) {
      const group = loaded(res, "group");
      const childId = idParam(req, "subgroupId");
      if (childId === null) return next();
      const outcome = await removeSubgroup(db, actorOf(res), group.id, childId);
      if (!outcome.ok) return redirectWithError(req, res, `/groups/${group.id}#subgroups`, outcome.message);
      redirectAfterPost(
        req,
        res,
        `/groups/${group.id}#subgroups`,
        `${outcome.value.subgroup} is no longer a subgroup of ${group.name}.`,
      );
    },

    async synchronize(req: Request, res: Response) {
      const group = loaded(res, "group");
      const outcome = await synchronizeGroup(
        { db, secretBox: deps.secretBox, logger: deps.directoryLogger },
        actorOf(res),
        group.id,
      );
      const back = `/groups/${group.id}`;
      if (!outcome.ok) return redirectWithError(req, res, back, outcome.message);
      const report = outcome.value;
      if (report.status === "missing") {
        return redirectWithError(
          req,
          res,
          back,
          `${report.directoryName} no longer has this group. It was kept in Roster, with its members and roles, and marked as missing.`,
        );
      }
      const parts = [
        `${report.membersAdded} membership${report.membersAdded === 1 ? "" : "s"} added`,
        `${report.membersRemoved} removed`,
        `${report.users.created} user${report.users.created === 1 ? "" : "s"} created`,
      ];
      if (report.conflicts.length > 0) {
        const shown = report.conflicts.slice(0, 3).map((c) => `${c.name}: ${c.reason}`);
        parts.push(
          `${report.conflicts.length} left out (${shown.join("; ")}${report.conflicts.length > 3 ? "; …" : ""})`,
        );
      }
      if (report.unresolved > 0) parts.push(`${report.unresolved} member value(s) matched no user or group`);
      redirectAfterPost(req, res, back, `Synchronized with ${report.directoryName}: ${parts.join(", ")}.`);
    },

    addRole: assignments.create,
    removeRole: assignments.destroy,

    /** Adding the users selected in the list to a group. */
    async membershipForm(req: Request, res: Response) {
      await renderMembershipPicker(req, res, 200, {});
    },

    async addMemberships(req: Request, res: Response) {
      const [groupId] = manyIds(req.body?.group);
      const userIds = manyIds(req.body?.user);
      if (userIds.length === 0)
        return renderMembershipPicker(req, res, 422, { user: "Choose at least one user." });
      if (groupId === undefined) return renderMembershipPicker(req, res, 422, { group: "Choose a group." });
      const outcome = await addMembers(db, actorOf(res), groupId, userIds);
      if (!outcome.ok) return renderMembershipPicker(req, res, 422, { group: outcome.message });
      redirectAfterPost(req, res, `/groups/${groupId}#group-members`, membershipMessage(outcome.value));
    },
  };
}

function membershipMessage(result: { group: { name: string }; added: string[]; already: string[] }): string {
  const names = (list: string[]) => (list.length <= 3 ? list.join(", ") : `${list.length} users`);
  const parts: string[] = [];
  if (result.added.length > 0) {
    parts.push(
      `${names(result.added)} ${result.added.length === 1 ? "was" : "were"} added to ${result.group.name}.`,
    );
  }
  if (result.already.length > 0) {
    parts.push(`${names(result.already)} ${result.already.length === 1 ? "was" : "were"} already in it.`);
  }
  return parts.join(" ");
}
