// @ts-check
/** The single-page app: who the user is, live updates, the header, and the hash routes. */

import { ApiError, get } from "./api.js";
import { confirmAndRun } from "./dialogs.js";
import { guard, h } from "./dom.js";
import { onLive, startLive } from "./live.js";
import { auditPage } from "./pages/audit.js";
import { clusterPage } from "./pages/cluster.js";
import { clustersPage } from "./pages/clusters.js";
import { discoverPage } from "./pages/discover.js";
import { instancePage } from "./pages/instance.js";
import { problemsPage } from "./pages/problems.js";
import { recoveriesPage } from "./pages/recoveries.js";
import { statusPage } from "./pages/status.js";
import { app } from "./state.js";

/** @typedef {(root: HTMLElement, argument: string, query: URLSearchParams) => Promise<() => void>} Page */

/** @type {Record<string, Page>} */
const PAGES = {
  clusters: (root, _, query) => clustersPage(root, query),
  cluster: (root, name) => clusterPage(root, name),
  instance: (root, key) => instancePage(root, key),
  problems: (root) => problemsPage(root),
  audit: (root) => auditPage(root),
  recoveries: (root) => recoveriesPage(root),
  discover: (root) => discoverPage(root),
  status: (root) => statusPage(root),
};

async function loadWhoAmI() {
  const who = /** @type {HTMLElement} */ (document.getElementById("who"));
  try {
    const answer = await get("whoami");
    app.whoami = answer;
    app.canChange = Boolean(answer.CanChange);
    app.reason = answer.CanChange ? "" : answer.Reason || `${answer.User || "you"} may not change the topology`;
    who.textContent = `${answer.User || "anonymous"} (${answer.Role}${answer.CanChange ? "" : ", read-only"})`;
    who.title = app.reason;
  } catch (error) {
    // no /api/whoami (an older API): whether changes are allowed is unknown; the API decides
    app.whoami = null;
    app.canChange = true;
    app.reason = "";
    who.textContent = "";
    who.title = error instanceof ApiError ? error.message : String(error);
  }
}

async function showGlobalRecoveries() {
  const button = /** @type {HTMLButtonElement} */ (document.getElementById("global-recovery"));
  try {
    const answer = await get("check-global-recoveries");
    app.globalRecoveries = answer.Details === "disabled" ? "disabled" : "enabled";
  } catch {
    app.globalRecoveries = "unknown";
  }
  button.textContent = `global recovery: ${app.globalRecoveries === "enabled" ? "ON" : app.globalRecoveries === "disabled" ? "OFF ⚠" : "?"}`;
  button.dataset.state = app.globalRecoveries;
  button.title = app.globalRecoveries === "enabled" ? "automated recoveries run; click to disable them" : "click to enable automated recoveries";
  guard(button);
}

async function toggleGlobalRecoveries() {
  const enable = app.globalRecoveries !== "enabled";
  const done = await confirmAndRun(
    {
      title: enable ? "Enable automated recoveries?" : "Disable automated recoveries?",
      body: enable ? "Failures are recovered again as they are detected." : "Failures are detected but nothing is recovered automatically until recoveries are enabled again.",
    },
    enable ? "enable-global-recoveries" : "disable-global-recoveries",
  );
  if (done) await showGlobalRecoveries();
}

/** @type {() => void} */
let leave = () => {};
let generation = 0;

async function route() {
  const hash = location.hash.replace(/^#\/?/, "") || "clusters";
  const [pathPart, queryPart = ""] = hash.split("?");
  const slash = pathPart.indexOf("/");
  const name = slash < 0 ? pathPart : pathPart.slice(0, slash);
  const argument = slash < 0 ? "" : decodeURIComponent(pathPart.slice(slash + 1));
  const page = PAGES[name];
  if (!page) {
    location.hash = "#/clusters";
    return;
  }
  for (const link of document.querySelectorAll("nav a")) {
    const current = /** @type {HTMLElement} */ (link).dataset.nav === (name === "cluster" || name === "instance" ? "clusters" : name);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  leave();
  leave = () => {};
  const mine = ++generation;
  const root = /** @type {HTMLElement} */ (document.getElementById("page"));
  root.replaceChildren(h("p", {}, "loading …"));
  document.title = `orchestrator · ${name}${argument ? ` ${argument}` : ""}`;
  const cleanup = await page(root, argument, new URLSearchParams(queryPart));
  if (mine === generation) leave = cleanup;
  else cleanup();
}

async function main() {
  await loadWhoAmI();
  const button = /** @type {HTMLButtonElement} */ (document.getElementById("global-recovery"));
  button.addEventListener("click", toggleGlobalRecoveries);
  await showGlobalRecoveries();
  onLive((event) => {
    if (event.type === "poll" || event.type === "recovery") showGlobalRecoveries();
  });
  window.addEventListener("hashchange", route);
  await route();
  startLive(); // after the first page subscribed: it misses nothing the stream says
}

main();
