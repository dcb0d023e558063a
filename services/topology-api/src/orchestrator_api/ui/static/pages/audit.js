// @ts-check
/** #/audit: the audit log, newest first, page by page; live while on the first page. */

import { ApiError, get, keyText } from "../api.js";
import { clusterLink, h, instanceLink, table } from "../dom.js";
import { onLive, throttled } from "../live.js";

/** @param {HTMLElement} root @returns {Promise<() => void>} */
export async function auditPage(root) {
  let page = 0;
  const body = h("div", { "data-testid": "audit" }, h("p", {}, "loading …"));
  const newer = /** @type {HTMLButtonElement} */ (h("button", { type: "button" }, "← newer"));
  const older = /** @type {HTMLButtonElement} */ (h("button", { type: "button" }, "older →"));
  const where = h("span", {});
  root.replaceChildren(h("h1", {}, "Audit"), h("div", { class: "toolbar" }, newer, where, older), body);
  const load = async () => {
    try {
      const entries = await get(page ? `audit/${page}` : "audit");
      where.textContent = ` page ${page + 1} `;
      newer.disabled = page === 0;
      older.disabled = entries.length === 0;
      body.replaceChildren(
        entries.length
          ? table(
              [
                ["When", (e) => e.AuditTimestamp],
                ["Type", (e) => h("code", {}, e.AuditType)],
                ["Instance", (e) => (keyText(e.AuditInstanceKey) ? instanceLink(keyText(e.AuditInstanceKey)) : "—")],
                ["Cluster", (e) => (e.ClusterName ? clusterLink(e.ClusterName) : "—")],
                ["User", (e) => e.User || "—"],
                ["Message", (e) => e.Message],
              ],
              /** @type {any[]} */ (entries),
              { class: "list" },
            )
          : h("p", {}, "No audit entry."),
      );
    } catch (error) {
      body.replaceChildren(h("p", { class: "error" }, error instanceof ApiError ? error.message : String(error)));
    }
  };
  newer.addEventListener("click", () => {
    page = Math.max(0, page - 1);
    load();
  });
  older.addEventListener("click", () => {
    page += 1;
    load();
  });
  await load();
  const reload = throttled(load, 1000);
  return onLive((event) => {
    if (page === 0 && (event.type === "audit" || event.type === "poll")) reload();
  });
}
