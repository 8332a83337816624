// Ranking by dragging or by keyboard. The server reads only the rank_<i> selects;
// this script keeps them in step with the order of the cards, so the page also
// works without it (the labeler then sets the rank numbers by hand).
(function () {
  "use strict";
  var list = document.getElementById("ranking");
  if (!list) return;
  var status = document.getElementById("rank-status");
  var editable = list.querySelector("select:not([disabled])") !== null;

  function cards() { return Array.prototype.slice.call(list.querySelectorAll(":scope > li.card")); }
  function select(card) { return card.querySelector("select.rank-select"); }

  // Order the cards by the ranks in the page: the shown order on a fresh page,
  // or what the labeler entered when the page comes back with an error.
  function orderFromSelects() {
    var rows = cards().map(function (c, pos) { return [Number(select(c).value), pos, c]; });
    rows.sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; });
    var prev = null;
    rows.forEach(function (row) {
      list.appendChild(row[2]);
      row[2].dataset.tied = prev !== null && row[0] === prev ? "1" : "";
      prev = row[0];
    });
  }

  // Write ranks from the card order: a tied card shares the rank above (1, 1, 3, 4).
  function sync() {
    var rank = 0;
    cards().forEach(function (c, pos) {
      if (pos === 0) c.dataset.tied = "";
      if (c.dataset.tied !== "1") rank = pos + 1;
      select(c).value = String(rank);
      c.querySelector(".tie-badge").hidden = c.dataset.tied !== "1";
    });
  }

  function announce(card) {
    var tied = card.dataset.tied === "1" ? " (tied)" : "";
    status.textContent = "Response " + card.dataset.label + " is rank " + select(card).value + " of " + cards().length + tied;
  }

  function move(card, delta) {
    var sibling = delta < 0 ? card.previousElementSibling : card.nextElementSibling;
    if (!sibling) return;
    card.dataset.tied = "";
    list.insertBefore(card, delta < 0 ? sibling : sibling.nextElementSibling);
    sync();
    card.focus();
    announce(card);
  }

  list.addEventListener("keydown", function (e) {
    var card = e.target;
    if (!editable || !card.classList || !card.classList.contains("card")) return;  // keys inside inputs keep their meaning
    if (e.key === "ArrowUp") { move(card, -1); e.preventDefault(); }
    else if (e.key === "ArrowDown") { move(card, 1); e.preventDefault(); }
    else if (e.key === "t" || e.key === "T") {
      if (card.previousElementSibling) card.dataset.tied = card.dataset.tied === "1" ? "" : "1";
      sync();
      announce(card);
      e.preventDefault();
    }
  });

  list.addEventListener("change", function (e) {
    if (e.target.classList.contains("rank-select")) { orderFromSelects(); sync(); }
  });

  // Drag by the handle only, so text in the card can still be selected.
  var dragged = null;
  list.addEventListener("mousedown", function (e) {
    if (editable && e.target.classList.contains("handle")) e.target.closest("li.card").draggable = true;
  });
  list.addEventListener("dragstart", function (e) {
    dragged = e.target.closest("li.card");
    if (!dragged) return;
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", dragged.dataset.index);
    dragged.classList.add("dragging");
  });
  list.addEventListener("dragover", function (e) {
    if (!dragged) return;
    e.preventDefault();
    var after = cards().filter(function (c) { return c !== dragged; }).find(function (c) {
      var box = c.getBoundingClientRect();
      return e.clientY < box.top + box.height / 2;
    });
    list.insertBefore(dragged, after || null);
  });
  list.addEventListener("drop", function (e) { e.preventDefault(); });
  list.addEventListener("dragend", function () {
    if (!dragged) return;
    dragged.classList.remove("dragging");
    dragged.draggable = false;
    dragged.dataset.tied = "";
    sync();
    announce(dragged);
    dragged = null;
  });

  // A second click while the first submit is on its way would only be refused as a duplicate.
  var form = document.getElementById("ranking-form");
  form.addEventListener("submit", function () {
    var button = form.querySelector("button.submit");
    window.setTimeout(function () { if (button) button.disabled = true; }, 0);
  });

  orderFromSelects();
  sync();
  list.classList.add("js");
})();
