import type { Request, Response } from "express";
import { render } from "../render.ts";
import { AUDIT_LOG_SECTION } from "./audit-log.ts";

export interface SettingsSection {
  href: string;
  label: string;
  description: string;
}

const SECTIONS: SettingsSection[] = [
  {
    href: "/settings/directories",
    label: "Directories",
    description: "The LDAP servers Roster imports users and groups from and signs them in with.",
  },
  AUDIT_LOG_SECTION,
];

/** Settings' start page lists its sections. */
export const settings = {
  index(req: Request, res: Response) {
    render(req, res, "settings/index", { title: "Settings", sections: SECTIONS });
  },
};
