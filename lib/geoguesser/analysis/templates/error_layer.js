{% macro script(this, kwargs) %}
(function () {
  var map = {{ this._parent.get_name() }};
  var rows = {{ this.rows }}, cells = {{ this.cells }}, colours = {{ this.colours }};
  var renderer = L.canvas({padding: 0.5});
  var scale = {{ this.scale }}, detailZoom = {{ this.detail_zoom }}, viewPx = {{ this.view_px }};
  function colour(km) {
    return colours[Math.min(colours.length - 1, Math.floor(km / scale * (colours.length - 1)))];
  }
  // the map pans a popup clear of the header box across the top
  var popupOptions = {maxWidth: {{ this.strip_px + 40 }}, autoPanPaddingTopLeft: L.point(20, 70)};
  function popup(r) {
    var p = '<b>' + r[6] + '</b><br>error <b>' + r[4].toFixed(1) + ' km</b>'
      + '<br>truth ' + r[0].toFixed(4) + ', ' + r[1].toFixed(4)
      + '<br>guess ' + r[2].toFixed(4) + ', ' + r[3].toFixed(4);
    if (r[7]) p += '<br>' + r[7];
    // an inline copy carries its sheets as data: URIs, each once (see maps.inline_copy)
    if (r[5]) p += '<div role="img" aria-label="views" style="margin-top:4px;width:'
      + (4 * viewPx) + 'px;height:' + viewPx + 'px;background:url('
      + ((window.geoguesserSheets || {})[r[5][0]] || r[5][0]) + ') 0 '
      + (-r[5][1] * viewPx) + 'px/' + (4 * viewPx) + 'px auto"></div>'
      + '<small>N &middot; E &middot; S &middot; W</small>';
    else if (r[5] === 0) p += '<br><small>views: only those of the worst locations travel in this'
      + ' copy; errors.html opened from disk has them all</small>';
    return p;
  }
  var detail = null;
  function buildDetail() {
    detail = L.layerGroup();
    rows.forEach(function (r) {
      var c = colour(r[4]);
      var line = L.polyline([[r[0], r[1]], [r[2], r[3]]],
        {renderer: renderer, color: c, weight: 2, opacity: 0.85});
      var guess = L.circleMarker([r[2], r[3]], {renderer: renderer, radius: 3, weight: 1.5,
        color: c, fillColor: '#ffffff', fillOpacity: 1});
      var truth = L.circleMarker([r[0], r[1]], {renderer: renderer, radius: 3.5, weight: 1,
        color: '#222222', fillColor: c, fillOpacity: 1});
      [line, guess, truth].forEach(function (layer) {
        layer.on('click', function (e) {
          L.popup(popupOptions).setLatLng(e.latlng)
            .setContent(popup(r)).openOn(map);
        });
        detail.addLayer(layer);
      });
    });
  }
  var overview = L.layerGroup();
  cells.forEach(function (g) {
    var c = colour(g[4]);
    var tip = g[6] + ': ' + g[5] + ' locations, mean error ' + g[4].toFixed(1)
      + ' km<br>arrow: mean truth to mean guess; zoom in for each location';
    overview.addLayer(L.polyline([[g[0], g[1]], [g[2], g[3]]],
      {renderer: renderer, color: c, weight: 3, opacity: 0.9}).bindTooltip(tip));
    overview.addLayer(L.circleMarker([g[2], g[3]], {renderer: renderer, radius: 3, weight: 2,
      color: c, fillColor: '#ffffff', fillOpacity: 1}).bindTooltip(tip));
    overview.addLayer(L.circleMarker([g[0], g[1]], {renderer: renderer, weight: 1,
      radius: 3 + 2 * Math.sqrt(g[5]), color: '#222222', fillColor: c, fillOpacity: 0.8})
      .bindTooltip(tip));
  });
  function update() {
    if (map.getZoom() >= detailZoom) {
      if (detail === null) buildDetail();
      if (map.hasLayer(overview)) map.removeLayer(overview);
      if (!map.hasLayer(detail)) map.addLayer(detail);
    } else {
      if (detail !== null && map.hasLayer(detail)) map.removeLayer(detail);
      if (!map.hasLayer(overview)) map.addLayer(overview);
    }
  }
  map.on('zoomend', update);
  update();
  // errors.html#uuid=ID opens on that location: a link to one bad prediction can be shared
  var wanted = decodeURIComponent((location.hash.match(/^#uuid=(.+)$/) || [])[1] || '');
  var escaped = wanted.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;').replace(/'/g, '&#x27;');
  var found = rows.find(function (r) { return r[6] === escaped; });
  if (found) {
    map.setView([found[0], found[1]], Math.max(detailZoom + 1, map.getZoom()));
    L.popup(popupOptions).setLatLng([found[0], found[1]])
      .setContent(popup(found)).openOn(map);
  }
  // where the page has no address of its own (inline in a notebook): centre on one location
  window.geoguesserCentre = function (uuid) {
    var r = rows.find(function (row) { return row[6] === uuid; });
    if (r) map.setView([r[0], r[1]], detailZoom + 1, {animate: false});
    return r ? map.latLngToContainerPoint([r[0], r[1]]) : null;
  };
})();
{% endmacro %}
