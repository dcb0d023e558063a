// @ts-check
/** Small DOM helpers: build elements, escape text for SVG markup, gate buttons on the role. */

import { app } from "./state.js";

/**
 * An element with attributes and children. Attributes starting with "on" are listeners;
 * `false`/`null`/`undefined` attributes are left out.
 * @param {string} tag
 * @param {Record<string, any>} [attributes]
 * @param {...(Node | string | null | undefined | false)} children
 * @returns {HTMLElement}
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child);
  }
  return element;
}

/** @param {unknown} text @returns {string} safe inside markup and attribute values */
export function esc(text) {
  return String(text)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

/** A button that changes something: disabled with the reason for a user who may not.
 * @param {string} label @param {string} action @param {() => void} run
 * @returns {HTMLButtonElement} */
export function actionButton(label, action, run) {
  const button = /** @type {HTMLButtonElement} */ (
    h("button", { type: "button", "data-action": action, onclick: run }, label)
  );
  guard(button);
  return button;
}

/** @param {HTMLButtonElement | HTMLInputElement | HTMLSelectElement} control */
export function guard(control) {
  if (!app.canChange) {
    control.disabled = true;
    control.title = app.reason || "you may not change the topology";
  }
}

/** A table from rows; `columns` give the header and a cell builder.
 * @template T
 * @param {Array<[string, (row: T) => Node | string]>} columns
 * @param {T[]} rows
 * @param {Record<string, string>} [attributes]
 * @returns {HTMLElement} */
export function table(columns, rows, attributes = {}) {
  return h(
    "table",
    attributes,
    h("thead", {}, h("tr", {}, ...columns.map(([title]) => h("th", { scope: "col" }, title)))),
    h("tbody", {}, ...rows.map((row) => h("tr", {}, ...columns.map(([, cell]) => h("td", {}, cell(row)))))),
  );
}

/** @param {string} key "host:port" @returns {HTMLElement} a link to the instance page */
export function instanceLink(key) {
  return h("a", { href: `#/instance/${key}` }, key);
}

/** @param {string} name @param {string} [label] @returns {HTMLElement} */
export function clusterLink(name, label) {
  return h("a", { href: `#/cluster/${encodeURIComponent(name)}` }, label || name);
}
