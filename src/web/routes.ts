import { Router } from "express";
import { apiDocs } from "../api/docs.ts";
import type { Db } from "../db/client.ts";
import type { DirectoryLogger } from "../ldap/client.ts";
import type { ExternalAuthenticator } from "../services/auth.ts";
import { PERMISSIONS } from "../services/permissions.ts";
import type { SecretBox } from "../services/secrets.ts";
import { requireLogin, requirePermission } from "./auth-middleware.ts";
import { accountHandlers } from "./routes/account.ts";
import { auditLogHandlers } from "./routes/audit-log.ts";
import { type AuthRouteDeps, authHandlers } from "./routes/auth.ts";
import { directoryHandlers } from "./routes/directories.ts";
import { groupHandlers } from "./routes/groups.ts";
import { homeHandlers } from "./routes/home.ts";
import { importHandlers } from "./routes/imports.ts";
import { roleHandlers } from "./routes/roles.ts";
import { settings } from "./routes/settings.ts";
import { synchronizationHandlers } from "./routes/synchronization.ts";
import { userDirectoryHandlers } from "./routes/user-directory.ts";
import { userHandlers } from "./routes/users.ts";

export interface RouteDeps {
  db: Db;
  secretBox: SecretBox;
  directoryLogger?: DirectoryLogger;
  externalAuth?: ExternalAuthenticator;
  throttle?: AuthRouteDeps["throttle"];
  /** Asks the import worker to look for a new run now rather than at its next poll. */
  wake?: () => void;
}

/**
 * Every URL of the console, with its middleware and its handler. The object a URL names
 * (`:userId`, `:groupId`, …) is loaded by `router.param` into `res.locals` before the handler runs;
 * when there is none the answer is 404.
 */
export function routes(deps: RouteDeps): Router {
  const router = Router();
  const auth = authHandlers(deps);
  const users = userHandlers(deps);
  const userDirectory = userDirectoryHandlers(deps);
  const groups = groupHandlers(deps);
  const roles = roleHandlers(deps);
  const auditLog = auditLogHandlers(deps);
  const home = homeHandlers(deps);
  const imports = importHandlers(deps);
  const directories = directoryHandlers(deps);
  const synchronization = synchronizationHandlers(deps);

  router.get("/login", auth.loginForm);
  router.post("/login", ...auth.loginThrottle, auth.login);
  router.post("/logout", auth.logout);
  router.get("/setup", auth.setupForm);
  router.post("/setup", auth.setup);

  router.get("/", requireLogin, home.index);

  // Everything below is the administration console. The guard covers whole sections, so an unknown
  // address in them answers like a known one (sign in, or 403) and nothing is loaded before it.
  router.use(
    ["/users", "/groups", "/group-memberships", "/roles", "/role-copies", "/imports", "/settings"],
    requirePermission(PERMISSIONS.manageUsers),
  );
  router.param("userId", users.load);
  router.param("groupId", groups.load);
  router.param("roleId", roles.load);
  router.param("directoryId", directories.load);
  router.param("runId", imports.loadRun);

  router.get("/users", users.list);
  router.get("/users.csv", requirePermission(PERMISSIONS.manageUsers), users.exportCsv);
  router.get("/users/new", users.newForm);
  router.post("/users", users.create);
  router.post("/users/selection", users.changeSelection);
  router.get("/users/:userId", users.show);
  router.post("/users/:userId", users.update);
  router.post("/users/:userId/login-status", users.setLoginStatus);
  router.get("/users/:userId/password", users.passwordForm);
  router.post("/users/:userId/password", users.setPassword);
  router.post("/users/:userId/role-assignments", users.addRole);
  router.post("/users/:userId/role-assignments/:assignmentId/delete", users.removeRole);
  router.post("/users/:userId/synchronizations", userDirectory.synchronize);
  router.get("/users/:userId/conversion", userDirectory.conversionForm);
  router.post("/users/:userId/conversion", userDirectory.convert);

  router.get("/groups/new", groups.newForm);
  router.post("/groups", groups.create);
  router.get("/groups/:groupId", groups.show);
  router.post("/groups/:groupId", groups.update);
  router.get("/groups/:groupId/members/new", groups.memberPicker);
  router.post("/groups/:groupId/members", groups.addMembers);
  router.post("/groups/:groupId/members/:memberId/delete", groups.removeMember);
  router.get("/groups/:groupId/subgroups/new", groups.subgroupPicker);
  router.post("/groups/:groupId/subgroups", groups.addSubgroup);
  router.post("/groups/:groupId/subgroups/:subgroupId/delete", groups.removeSubgroup);
  router.post("/groups/:groupId/synchronizations", groups.synchronize);
  router.post("/groups/:groupId/role-assignments", groups.addRole);
  router.post("/groups/:groupId/role-assignments/:assignmentId/delete", groups.removeRole);
  router.get("/group-memberships/new", groups.membershipForm);
  router.post("/group-memberships", groups.addMemberships);

  router.get("/roles", roles.list);
  router.get("/roles/new", roles.newForm);
  router.post("/roles", roles.create);
  router.get("/roles/:roleId", roles.show);
  router.post("/roles/:roleId", roles.update);
  router.post("/roles/:roleId/delete", roles.destroy);
  router.get("/role-copies/new", roles.copyForm);
  router.post("/role-copies", roles.copy);

  router.get("/imports/new", imports.searchPage);
  router.post("/imports/selection", imports.changeSelection);
  router.post("/imports", imports.start);
  router.get("/imports", imports.list);
  router.get("/imports/:runId", imports.show);
  router.post("/imports/:runId/cancellation", imports.cancel);
  router.post("/imports/:runId/held-changes", synchronization.review);

  router.get("/settings", settings.index);
  router.get("/settings/audit-log", auditLog.index);
  router.get("/settings/audit-log.csv", auditLog.exportCsv);
  router.get("/settings/directories", directories.list);
  router.get("/settings/directories/new", directories.newForm);
  router.post("/settings/directories", directories.create);
  router.post("/settings/directories/preset", directories.applyPreset);
  router.post("/settings/directories/connection-tests", directories.testSettings);
  router.get("/settings/directories/:directoryId", directories.show);
  router.post("/settings/directories/:directoryId", directories.update);
  router.get("/settings/directories/:directoryId/edit", directories.edit);
  router.post("/settings/directories/:directoryId/connection-tests", directories.testSaved);
  router.post("/settings/directories/:directoryId/position", directories.move);
  router.post("/settings/directories/:directoryId/enabled", directories.setEnabled);
  router.get("/settings/directories/:directoryId/synchronization", synchronization.show);
  router.post("/settings/directories/:directoryId/synchronization", synchronization.save);
  router.post("/settings/directories/:directoryId/synchronizations", synchronization.synchronizeNow);
  router.get("/settings/directories/:directoryId/delete", directories.deleteForm);
  router.post("/settings/directories/:directoryId/delete", directories.destroy);
  // Not :directoryId: a missing directory here gets the imports' own 404 page, as it always has.
  router.get("/settings/directories/:id/imports", imports.directoryRuns);

  // My account, API tokens and the API's documentation (issue 29). A service user's tokens are
  // under /users, so the Users section's guard covers them.
  const account = accountHandlers(deps);
  router.get("/account", requireLogin, account.show);
  router.post("/account", requireLogin, account.updateProfile);
  router.post("/account/api-tokens", requirePermission(PERMISSIONS.manageUsers), account.createOwnToken);
  router.post("/account/api-tokens/:tokenId/revocation", requireLogin, account.revokeOwnToken);
  router.get("/users/:userId/api-tokens", account.serviceTokens);
  router.post("/users/:userId/api-tokens", account.createServiceToken);
  router.post("/users/:userId/api-tokens/:tokenId/revocation", account.revokeServiceToken);
  router.get("/api/docs", requireLogin, apiDocs.page);
  router.get("/api/docs/init.js", requireLogin, apiDocs.script);

  return router;
}
