(function () {
  var border = ${border};
  var map = L.map('map', {preferCanvas: true});
  var outline = L.geoJSON(border, {style: {color: '#333', weight: 1.5, fillColor: '#f2efe9',
    fillOpacity: 0.6}}).addTo(map);
  map.fitBounds(outline.getBounds());
  var shown = L.layerGroup().addTo(map);
  var select = document.getElementById('model');
  fetch('models').then(function (r) { return r.json(); }).then(function (m) {
    m.models.forEach(function (name) {
      var o = document.createElement('option');
      o.value = name; o.textContent = name; o.selected = name === m.default;
      select.appendChild(o);
    });
  });
  var status = document.getElementById('status'), result = document.getElementById('result');
  function say(text, bad) { status.textContent = text; status.className = bad ? 'error' : ''; }
  function cell(tr, text) { var td = document.createElement('td'); td.textContent = text;
    tr.appendChild(td); }
  function draw(a) {
    shown.clearLayers();
    var best = a.top_cells.length ? a.top_cells[0].probability : 1;
    a.top_cells.forEach(function (c) {
      var style = {color: '#0072B2', weight: 1, fillColor: '#0072B2',
        fillOpacity: 0.15 + 0.5 * c.probability / best};
      var tip = 'cell ' + c.label + ': p ' + c.probability.toFixed(2);
      (c.outline ? L.polygon(c.outline, style) : L.circleMarker([c.latitude, c.longitude],
        style)).bindTooltip(tip).addTo(shown);
    });
    if (a.expected_error_km !== null) {
      L.circle([a.latitude, a.longitude], {radius: a.expected_error_km * 1000, color: '#D55E00',
        weight: 1, dashArray: '4', fill: false}).addTo(shown);
    }
    L.circleMarker([a.latitude, a.longitude], {radius: 7, color: '#000', weight: 2,
      fillColor: '#D55E00', fillOpacity: 1}).bindTooltip('the guess').addTo(shown);
    result.textContent = '';
    var p = document.createElement('p');
    p.textContent = 'guess ' + a.latitude.toFixed(4) + ', ' + a.longitude.toFixed(4)
      + (a.expected_error_km !== null ? '; expected error ' + a.expected_error_km.toFixed(1)
      + ' km (dashed circle)' : '') + '; ' + a.views + ' view(s), model ' + a.model;
    result.appendChild(p);
    if (a.top_cells.length) {
      var t = document.createElement('table'), h = document.createElement('tr');
      ['cell', 'probability', 'centroid'].forEach(function (x) {
        var th = document.createElement('th'); th.textContent = x; h.appendChild(th); });
      t.appendChild(h);
      a.top_cells.forEach(function (c) {
        var tr = document.createElement('tr');
        cell(tr, c.label); cell(tr, c.probability.toFixed(3));
        cell(tr, c.latitude.toFixed(3) + ', ' + c.longitude.toFixed(3));
        t.appendChild(tr);
      });
      result.appendChild(t);
    }
  }
  function send(files) {
    if (!files.length) return;
    var form = new FormData();
    Array.prototype.forEach.call(files, function (f) { form.append('images', f); });
    if (select.value) form.append('model', select.value);
    say('asking the model about ' + files.length + ' photograph(s)...');
    return fetch('predict', {method: 'POST', body: form}).then(function (r) {
      return r.json().then(function (body) { return [r.ok, body]; });
    }).then(function (x) {
      if (x[0]) { say(''); draw(x[1]); } else { say(x[1].detail, true); }
    }).catch(function (e) { say('no answer from the server: ' + e, true); });
  }
  var drop = document.getElementById('drop'), input = document.getElementById('files');
  drop.addEventListener('click', function () { input.click(); });
  input.addEventListener('change', function () { send(input.files); });
  drop.addEventListener('dragover', function (e) { e.preventDefault(); drop.className = 'over'; });
  drop.addEventListener('dragleave', function () { drop.className = ''; });
  drop.addEventListener('drop', function (e) {
    e.preventDefault(); drop.className = ''; send(e.dataTransfer.files);
  });
  window.geoguesserSend = send;  // what a drop does, for scripts and tests
})();
