// @ts-check
/** The notice line and the confirmation dialog every change goes through. */

import { change, ApiError } from "./api.js";

/** Show a result or an error in [data-testid=notice].
 * @param {string} message @param {"ok" | "error" | "info"} [kind] */
export function notify(message, kind = "info") {
  const notice = /** @type {HTMLElement} */ (document.querySelector('[data-testid="notice"]'));
  notice.textContent = message;
  notice.dataset.kind = kind;
}

/**
 * @typedef {{value: string, label: string}} Choice
 * @typedef {{
 *   title: string,
 *   body?: Node | string,
 *   typeKey?: string,
 *   choices?: Choice[],
 *   okLabel?: string,
 * }} ConfirmOptions
 */

/** Ask before changing anything. Resolves to the chosen choice's value ("ok" without choices),
 * or null when cancelled. With `typeKey`, OK stays disabled until that text is typed.
 * @param {ConfirmOptions} options @returns {Promise<string | null>} */
export function confirmAction(options) {
  const dialog = /** @type {HTMLDialogElement} */ (document.querySelector('dialog[data-testid="confirm"]'));
  const q = (/** @type {string} */ selector) => /** @type {HTMLElement} */ (dialog.querySelector(selector));
  q("#confirm-title").textContent = options.title;
  const body = q(".confirm-body");
  body.replaceChildren(options.body ?? "");
  const choices = q(".confirm-choices");
  choices.replaceChildren(choices.firstElementChild ?? "");
  choices.hidden = !options.choices || options.choices.length < 2;
  (options.choices ?? []).forEach((choice, index) => {
    const input = document.createElement("input");
    input.type = "radio";
    input.name = "confirm-choice";
    input.value = choice.value;
    input.checked = index === 0;
    const label = document.createElement("label");
    label.append(input, " ", choice.label);
    choices.append(label);
  });
  const typing = q(".confirm-typing");
  const typed = /** @type {HTMLInputElement} */ (q('[data-testid="confirm-type"]'));
  const ok = /** @type {HTMLButtonElement} */ (q('[data-testid="confirm-ok"]'));
  const cancel = /** @type {HTMLButtonElement} */ (q('[data-testid="confirm-cancel"]'));
  ok.textContent = options.okLabel ?? "OK";
  typed.value = "";
  typing.hidden = !options.typeKey;
  q(".confirm-key").textContent = options.typeKey ?? "";
  const check = () => {
    ok.disabled = Boolean(options.typeKey) && typed.value.trim() !== options.typeKey;
  };
  check();
  typed.oninput = check;
  return new Promise((resolve) => {
    cancel.onclick = () => dialog.close("cancel");
    dialog.onclose = () => {
      dialog.onclose = null;
      if (dialog.returnValue !== "ok") return resolve(null);
      const picked = /** @type {HTMLInputElement | null} */ (
        dialog.querySelector('input[name="confirm-choice"]:checked')
      );
      resolve(picked ? picked.value : options.choices?.[0]?.value ?? "ok");
    };
    dialog.returnValue = "";
    dialog.showModal();
    (options.typeKey ? typed : ok).focus();
  });
}

/** Run a change route and show its Message (or the error) in the notice.
 * @param {string} path @returns {Promise<boolean>} whether it succeeded */
export async function run(path) {
  notify(`running ${path.split("/")[0]} …`, "info");
  try {
    const answer = await change(path);
    notify(answer.Message || `${path.split("/")[0]}: done`, "ok");
    return true;
  } catch (error) {
    notify(error instanceof ApiError ? error.message : String(error), "error");
    return false;
  }
}

/** Confirm, then run. @param {ConfirmOptions} options @param {string} path
 * @returns {Promise<boolean>} */
export async function confirmAndRun(options, path) {
  const answer = await confirmAction(options);
  if (answer === null) return false;
  return run(path);
}
