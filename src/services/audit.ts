import type { Db } from "../db/client.ts";
import { auditLog } from "../db/schema.ts";

export interface Actor {
  id: number | null;
  name: string;
}

export const SYSTEM_ACTOR: Actor = { id: null, name: "system" };

export interface AuditEntry {
  action: string;
  targetType?: string;
  targetId?: string | number;
  targetName?: string;
  /** Never put secrets here: this is shown to administrators. */
  details?: Record<string, unknown>;
}

export async function recordAudit(db: Db, actor: Actor, entry: AuditEntry): Promise<void> {
  await db.insert(auditLog).values({
    actorId: actor.id,
    actorName: actor.name,
    action: entry.action,
    targetType: entry.targetType ?? "",
    targetId: entry.targetId === undefined ? "" : String(entry.targetId),
    targetName: entry.targetName ?? "",
    details: entry.details ?? {},
  });
}
