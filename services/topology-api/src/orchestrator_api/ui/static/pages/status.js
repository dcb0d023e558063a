// @ts-check
/** #/status: which recovery worker leads (and its fencing token), the API's health, discovery's
 * view (how many instances are fresh), and the global recovery switch. */

import { ApiError, get } from "../api.js";
import { h } from "../dom.js";
import { onLive, throttled } from "../live.js";

/** @param {string} label @param {Node | string} value @returns {HTMLElement[]} */
function item(label, value) {
  return [h("dt", {}, label), h("dd", {}, value)];
}

/** @param {Promise<any>} answer @returns {Promise<any>} the answer, or {error: message} */
async function settle(answer) {
  try {
    return await answer;
  } catch (error) {
    return { error: error instanceof ApiError ? error.message : String(error) };
  }
}

/** @param {HTMLElement} root @returns {Promise<() => void>} */
export async function statusPage(root) {
  const body = h("div", { "data-testid": "status" }, h("p", {}, "loading …"));
  root.replaceChildren(h("h1", {}, "Status"), body);
  const load = async () => {
    const [status, leader, state, health, recoveries, instances] = await Promise.all([
      settle(get("health")),
      settle(get("raft-leader")),
      settle(get("raft-state")),
      settle(get("raft-health")),
      settle(get("check-global-recoveries")),
      settle(get("all-instances")),
    ]);
    const details = status.Details ?? {};
    const active = details.ActiveNode;
    const list = Array.isArray(instances) ? instances : [];
    const fresh = list.filter((i) => i.IsUpToDate).length;
    const failing = list.filter((i) => !i.IsLastCheckValid).length;
    body.replaceChildren(
      h(
        "dl",
        { class: "fields status" },
        ...item("API", status.error ? `✖ ${status.error}` : `${details.Healthy ? "✓" : "✖"} ${status.Message ?? ""} (${details.Hostname ?? "?"})`),
        ...item("Recovery leader", leader.error ? `✖ ${leader.error}` : String(leader || "none")),
        ...item("Fencing token", active?.Token ? String(active.Token) : "—"),
        ...item("Active worker", active ? `${active.ExtraInfo || active.Hostname} since ${active.FirstSeenActive}` : "none leads"),
        ...item("Leadership state", state.error ? `✖ ${state.error}` : String(state)),
        ...item("Leadership health", health.error ? `✖ ${health.error}` : String(health)),
        ...item("Global recoveries", recoveries.error ? `✖ ${recoveries.error}` : `${recoveries.Details === "disabled" ? "OFF ⚠" : "ON"} (switch in the header)`),
        ...item("Discovery", instances.error ? `✖ ${instances.error}` : `${list.length} instances · ${fresh} up to date · ${failing ? `✖ ${failing} failing their last check` : "none failing"}`),
      ),
    );
  };
  await load();
  const reload = throttled(load, 2000);
  return onLive((event) => {
    if (event.type !== "audit" && event.type !== "changed") reload();
  });
}
