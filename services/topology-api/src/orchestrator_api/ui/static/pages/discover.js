// @ts-check
/** #/discover: ask discovery to probe a new instance. */

import { seg } from "../api.js";
import { confirmAndRun, notify } from "../dialogs.js";
import { guard, h } from "../dom.js";

/** @param {HTMLElement} root @returns {Promise<() => void>} */
export async function discoverPage(root) {
  const host = /** @type {HTMLInputElement} */ (h("input", { name: "host", required: true, placeholder: "db-host.example or 127.0.0.1", "data-testid": "discover-host" }));
  const port = /** @type {HTMLInputElement} */ (h("input", { name: "port", type: "number", min: 1, max: 65535, value: 3306, required: true, "data-testid": "discover-port" }));
  const submit = /** @type {HTMLButtonElement} */ (h("button", { type: "submit", "data-action": "discover" }, "Discover"));
  guard(submit);
  const form = h(
    "form",
    { class: "discover", "data-testid": "discover" },
    h("label", {}, "Host ", host),
    h("label", {}, "Port ", port),
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = host.value.trim();
    if (!name || !port.value) return notify("give a host and a port", "error");
    const key = `${name}:${port.value}`;
    const done = await confirmAndRun({ title: `Discover ${key}?`, body: "Discovery probes it, then its master and replicas." }, `discover/${seg(name)}/${seg(port.value)}`);
    if (done) root.append(h("p", {}, "Asked for ", h("a", { href: `#/instance/${key}` }, key), "; it appears in its cluster within a poll."));
  });
  root.replaceChildren(h("h1", {}, "Discover an instance"), h("p", {}, "Orchestrator then follows its master and replicas by itself."), form);
  return () => {};
}
