// Segment add form: a static list or suppression list has no rule and no parent, so the
// "Definition" fieldset (rule builder and parent) is hidden while such a kind is chosen.
(function () {
  "use strict";
  const STATIC_KINDS = ["static", "suppression_list"];
  function update(select) {
    const rule = document.querySelector(".field-rule");
    const fieldset = rule && rule.closest("fieldset");
    if (!fieldset) return;
    const isStatic = STATIC_KINDS.includes(select.value);
    fieldset.hidden = isStatic;
    let note = document.getElementById("static-kind-note");
    if (isStatic && !note) {
      note = document.createElement("p");
      note.id = "static-kind-note";
      note.className = "help";
      note.textContent = "A static list has no rule: after saving, add members by hand, by upload or from the contact list.";
      fieldset.after(note);
    }
    if (note) note.hidden = !isStatic;
  }
  document.addEventListener("DOMContentLoaded", function () {
    const select = document.getElementById("id_kind");
    if (!select || select.tagName !== "SELECT") return;
    select.addEventListener("change", function () { update(select); });
    update(select);
  });
})();
