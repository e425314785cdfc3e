import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { csvLine } from "../../src/cli/output.ts";

describe("roster users --csv cells", () => {
  test("a cell a spreadsheet would run as a formula is shown as text, as the page's CSV does", () => {
    // Quoting alone doesn't help: a spreadsheet still runs "=…" once the quotes are read.
    assert.equal(
      csvLine(["1", '=HYPERLINK("http://evil.test","x")', "+1", "-2", "@SUM(A1)"]),
      `1,"'=HYPERLINK(""http://evil.test"",""x"")","'+1","'-2","'@SUM(A1)"`,
    );
    assert.equal(csvLine(["\tcmd", "\rcmd"]), `"'\tcmd","'\rcmd"`);
  });

  test("plain cells stay plain; commas, quotes and line breaks are quoted", () => {
    assert.equal(csvLine(["alice", "Alice Example", "a@example.test"]), "alice,Alice Example,a@example.test");
    assert.equal(csvLine(["Doe, Jane", 'say "hi"', "two\nlines"]), `"Doe, Jane","say ""hi""","two\nlines"`);
  });
});
