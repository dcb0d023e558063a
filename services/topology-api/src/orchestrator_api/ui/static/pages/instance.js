// @ts-check
/** The instance panel: everything the instance JSON says, and every action on it. Used beside
 * the cluster graph and as the #/instance/<host:port> page. */

import { get, keyPath, keyText, seg, ApiError } from "../api.js";
import { actionButton, clusterLink, guard, h, instanceLink } from "../dom.js";
import { confirmAndRun, notify } from "../dialogs.js";
import { galeraState, knownNodes } from "../galera.js";
import { app } from "../state.js";

/**
 * @typedef {{Key: {Hostname: string, Port: number}, Allowed: boolean, Reason: string}} Verdict
 * @typedef {{instances: any[], onChanged: () => void}} PanelContext
 */

const RULES = ["prefer", "neutral", "prefer_not", "must_not", "must"];

/** @param {string} path @returns {Promise<Map<string, Verdict> | null>} null: not checked */
async function verdicts(path) {
  try {
    /** @type {Verdict[]} */
    const answer = await get(path);
    return new Map(answer.map((entry) => [keyText(entry.Key), entry]));
  } catch {
    return null;
  }
}

/** A select of target instances, each labelled allowed / refused (reason) / not checked.
 * @param {string} testid @param {string[]} targets @param {Map<string, Verdict> | null} checked
 * @returns {HTMLSelectElement} */
function targetSelect(testid, targets, checked) {
  const select = /** @type {HTMLSelectElement} */ (h("select", { "data-testid": testid }));
  select.append(h("option", { value: "" }, targets.length ? "choose a target…" : "no other instance"));
  for (const target of targets) {
    const verdict = checked?.get(target);
    let label = `${target} (not checked beforehand)`;
    if (verdict) label = verdict.Allowed ? `${target}: allowed` : `${target}: refused: ${verdict.Reason}`;
    select.append(h("option", { value: target, disabled: verdict ? !verdict.Allowed : false }, label));
  }
  guard(select);
  return select;
}

/** @param {string} name @param {any} value @returns {string} */
function shown(name, value) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "object") {
    if ("Hostname" in value && "Port" in value) return keyText(value) || "—";
    if ("Valid" in value && "Int64" in value) return value.Valid ? String(value.Int64) : "NULL";
    return JSON.stringify(value);
  }
  return String(value);
}

/** A Galera node's wsrep state field by field, above the actions: on a Galera node it is what
 * to look at first (the JSON below has it too, in one line).
 * @param {any} galera the instance's Galera object @param {any[]} instances its cluster's
 * @returns {HTMLElement} */
function galeraSection(galera, instances) {
  const state = galeraState(galera, knownNodes(galera, instances));
  const yes = (/** @type {boolean} */ value) => (value ? "yes" : "NO");
  /** @type {Array<[string, string]>} */
  const rows = [
    ["Galera cluster", galera.ClusterName],
    ["Node name", galera.NodeName],
    ["Local state", galera.LocalStateComment],
    ["Component", `${galera.ClusterStatus} of ${galera.ClusterSize} node(s)`],
    ["Ready", yes(galera.Ready)],
    ["Connected", yes(galera.Connected)],
    ["Desync", galera.Desync ? `yes (desync count ${galera.DesyncCount})` : "no"],
    ["State UUID", galera.ClusterStateUUID],
    ["GTID domain", galera.GtidDomainId === null ? "—" : String(galera.GtidDomainId)],
  ];
  const members = (galera.Members ?? []).map(keyText);
  return h(
    "section",
    { class: state.warn ? "galera warn" : "galera", "data-testid": "galera", "aria-label": "Galera state" },
    h("h3", {}, "Galera: ", h("span", { "data-testid": "galera-state" }, `${state.warn ? "⚠ " : ""}${state.text}`)),
    h(
      "dl",
      { class: "fields" },
      ...rows.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value || "—")]),
      h("dt", {}, "Members"),
      h("dd", {}, ...(members.length ? members.flatMap((/** @type {string} */ member, /** @type {number} */ n) => [n ? ", " : "", instanceLink(member)]) : ["—"])),
    ),
  );
}

/** @param {string} text @returns {string} safe as one path segment of an owner/reason */
function plain(text) {
  return text.replace(/[/\\]/g, " ").trim();
}

/**
 * @param {string} key "host:port"
 * @param {PanelContext} context
 * @returns {Promise<HTMLElement>}
 */
export async function instancePanel(key, context) {
  const path = keyPath(key);
  const [instance, tags, relocatable, replicasRelocatable] = await Promise.all([
    get(`instance/${path}`),
    get(`tags/${path}`).catch(() => []),
    verdicts(`can-relocate/${path}`),
    verdicts(`can-relocate-replicas/${path}`),
  ]);
  const master = keyText(instance.MasterKey);
  const others = context.instances.map((i) => keyText(i.Key)).filter((k) => k !== key);
  const replicas = (instance.Replicas ?? []).map(keyText);
  const owner = app.whoami?.User || "web-ui";
  /** @param {string} routePath @param {string} title @param {{typeKey?: string, body?: string}} [more] */
  const act = async (routePath, title, more = {}) => {
    if (await confirmAndRun({ title, body: more.body, typeKey: more.typeKey }, routePath)) context.onChanged();
  };
  /** @param {HTMLSelectElement} select @param {string} route @param {string} verb */
  const moveTo = (select, route, verb) => () => {
    if (!select.value) return notify(`choose where to ${verb} first`, "error");
    act(`${route}/${path}/${keyPath(select.value)}`, `${verb} ${key} below ${select.value}?`);
  };

  const relocateTarget = targetSelect("relocate-target", others, relocatable);
  const replicasTarget = targetSelect("relocate-replicas-target", others, replicasRelocatable);
  const takeoverTarget = targetSelect("takeover-target", replicas, null);
  const ownerInput = /** @type {HTMLInputElement} */ (h("input", { name: "owner", value: owner, size: 10, "aria-label": "owner" }));
  const reasonInput = /** @type {HTMLInputElement} */ (h("input", { name: "reason", placeholder: "reason", size: 14, "aria-label": "reason" }));
  const durationInput = /** @type {HTMLInputElement} */ (h("input", { name: "duration", value: "1h", size: 5, "aria-label": "duration (30m, 2h, 1d)" }));
  const rule = /** @type {HTMLSelectElement} */ (h("select", { "aria-label": "promotion rule" }, ...RULES.map((r) => h("option", { value: r, selected: r === instance.PromotionRule }, r))));
  const tagInput = /** @type {HTMLInputElement} */ (h("input", { placeholder: "name=value", size: 14, "aria-label": "tag" }));
  const who = () => [plain(ownerInput.value) || owner, plain(reasonInput.value) || "web-ui"];

  const actions = h(
    "div",
    { class: "actions", "data-testid": "actions" },
    h(
      "fieldset",
      {},
      h("legend", {}, "Move"),
      h("div", { class: "row" }, h("label", {}, "Relocate below… ", relocateTarget), actionButton("Relocate", "relocate", moveTo(relocateTarget, "relocate", "Relocate"))),
      h("div", { class: "row" }, h("label", {}, "Relocate replicas below… ", replicasTarget), actionButton("Relocate replicas", "relocate-replicas", moveTo(replicasTarget, "relocate-replicas", "Relocate the replicas of"))),
      h(
        "div",
        { class: "row" },
        actionButton("Move up", "move-up", () => act(`move-up/${path}`, `Move ${key} up, to replicate from its master's master?`)),
        actionButton("Take siblings", "take-siblings", () => act(`take-siblings/${path}`, `Move the siblings of ${key} below it?`)),
        actionButton("Make co-master", "make-co-master", () => act(`make-co-master/${path}`, `Make ${key} a co-master with its master?`)),
        actionButton("Repoint", "repoint", () => act(`repoint/${path}`, `Repoint ${key} to its master ${master}?`)),
      ),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Replication"),
      h(
        "div",
        { class: "row" },
        actionButton("Start replica", "start-replica", () => act(`start-replica/${path}`, `Start replication on ${key}?`)),
      actionButton("Stop replica", "stop-replica", () => act(`stop-replica/${path}`, `Stop replication on ${key}?`)),
      actionButton("Set read-only", "set-read-only", () => act(`set-read-only/${path}`, `Make ${key} read-only?`)),
        actionButton("Set writeable", "set-writeable", () => act(`set-writeable/${path}`, `Make ${key} writeable?`)),
      ),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Downtime and maintenance"),
      h("div", { class: "row" }, ownerInput, reasonInput, durationInput),
      h(
        "div",
        { class: "row" },
        actionButton("Begin downtime", "begin-downtime", () => {
          const [o, r] = who();
          act(`begin-downtime/${path}/${seg(o)}/${seg(r)}/${seg(durationInput.value.trim() || "1h")}`, `Downtime ${key} for ${durationInput.value}?`);
        }),
        actionButton("End downtime", "end-downtime", () => act(`end-downtime/${path}`, `End the downtime of ${key}?`)),
        actionButton("Begin maintenance", "begin-maintenance", () => {
          const [o, r] = who();
          act(`begin-maintenance/${path}/${seg(o)}/${seg(r)}`, `Put ${key} in maintenance?`);
        }),
        actionButton("End maintenance", "end-maintenance", () => act(`end-maintenance/${path}`, `End the maintenance of ${key}?`)),
      ),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Promotion and tags"),
      h("div", { class: "row" }, rule, actionButton("Register candidate", "register-candidate", () => act(`register-candidate/${path}/${seg(rule.value)}`, `Register ${key} with promotion rule ${rule.value}?`))),
      h(
        "div",
        { class: "row tags" },
        ...tags.map((/** @type {string} */ tag) =>
          h("span", { class: "tag" }, tag, " ", actionButton("×", "untag", () => act(`untag/${path}/${seg(tag.split("=")[0])}`, `Remove the tag ${tag} from ${key}?`))),
        ),
        tagInput,
        actionButton("Add tag", "tag", () => {
          if (!tagInput.value.trim()) return notify("type a tag (name or name=value) first", "error");
          act(`tag/${path}?tag=${encodeURIComponent(tagInput.value.trim())}`, `Tag ${key} with ${tagInput.value.trim()}?`);
        }),
      ),
    ),
    h(
      "fieldset",
      { class: "danger" },
      h("legend", {}, "Dangerous (type the instance to confirm)"),
      h(
        "div",
        { class: "row" },
        h("label", {}, "Graceful takeover to ", takeoverTarget),
        actionButton("Graceful master takeover", "graceful-master-takeover", () => {
          const to = takeoverTarget.value;
          const route = to ? `graceful-master-takeover/${path}/${keyPath(to)}` : `graceful-master-takeover/${path}`;
          act(route, `Graceful master takeover of ${key}${to ? ` to ${to}` : ""}?`, { typeKey: key, body: "The master is demoted and a replica promoted; writes stop meanwhile." });
        }),
      ),
      h(
        "div",
        { class: "row" },
        actionButton("Recover", "recover", () => act(`recover/${path}`, `Run a recovery of ${key} now?`, { typeKey: key })),
        actionButton("Force failover", "force-master-failover", () => act(`force-master-failover/${path}`, `Force a failover of ${key}'s cluster?`, { typeKey: key, body: "The master is treated as dead and a replica promoted." })),
        actionButton("Forget", "forget", () => act(`forget/${path}`, `Forget ${key}?`, { typeKey: key, body: "It disappears until discovery finds it again." })),
      ),
    ),
  );

  const details = h(
    "dl",
    { class: "fields" },
    ...Object.entries(instance).flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, shown(name, value))]),
  );
  return h(
    "section",
    { class: "instance-panel", "data-testid": "instance-panel", "data-key": key, "aria-label": `instance ${key}` },
    h("h2", {}, key, " ", h("small", {}, instance.ReadOnly ? "read-only" : "writeable", master ? ` · replica of ${master}` : instance.Galera ? " · Galera node" : " · master")),
    h("p", {}, "cluster ", clusterLink(instance.ClusterName), instance.IsDowntimed ? ` · downtimed by ${instance.DowntimeOwner}: ${instance.DowntimeReason}` : ""),
    instance.Galera ? galeraSection(instance.Galera, context.instances) : null,
    actions,
    h("details", { open: true }, h("summary", {}, "Instance JSON"), details),
  );
}

/** #/instance/<host:port>: the panel alone. @param {HTMLElement} root @param {string} key */
export async function instancePage(root, key) {
  root.replaceChildren(h("p", {}, `loading ${key} …`));
  const render = async () => {
    try {
      const instances = await get(`cluster/instance/${keyPath(key)}`).catch(() => []);
      root.replaceChildren(await instancePanel(key, { instances, onChanged: render }));
    } catch (error) {
      root.replaceChildren(h("p", { class: "error" }, error instanceof ApiError ? error.message : String(error)));
    }
  };
  await render();
  return () => {};
}
