-- wrk script for the target's reference point: Prometheus Alertmanager's
-- own in-memory intake, `POST /api/v2/alerts` with one new alert per
-- request (the issue's "about 20,000 alerts/s" baseline), so it can be
-- measured on the same machine as firstline. The alert carries the same
-- labels and annotations as `alertmanager.lua`'s.
--
--   prometheus-alertmanager --config.file=benches/wrk/alertmanager_null.yml \
--     --storage.path=/tmp/am-bench --web.listen-address=127.0.0.1:19093 \
--     --cluster.listen-address= &
--   wrk -t2 -c16 -d10s -s benches/wrk/alertmanager_api_v2.lua http://127.0.0.1:19093/api/v2/alerts
--
-- Offsets include the start time, so runs a second or more apart never
-- re-send the same alert. Non-2xx answers are counted and printed.

local threads = {}
local counter = 1
local run = os.time() % 1000000

function setup(thread)
  thread:set("offset", counter * 100000000000000 + run * 10000000)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  n = 0
  rejected = 0
  starts = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() - 60)
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local id = offset + n
  local svc = id % 50
  local inst = string.format("10.%d.%d.%d:%d",
    math.floor(id / 16777216) % 256, math.floor(id / 65536) % 256, math.floor(id / 256) % 256, id % 65536)
  local body = string.format(
    '[{"labels":{"alertname":"BenchAlert","instance":"%s","job":"node","service":"svc-%d","severity":"warning"},"annotations":{"summary":"BenchAlert on svc-%d","description":"Synthetic alert %d on %s from the firstline intake benchmark."},"startsAt":"%s","generatorURL":"http://prometheus.bench.local:9090/graph?g0.expr=up%%7Bjob%%3D%%22node%%22%%7D+%%3D%%3D+0&g0.tab=1"}]',
    inst, svc, svc, id, inst, starts)
  return wrk.format("POST", nil, nil, body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    rejected = rejected + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("rejected") or 0)
  end
  io.write(string.format("non-2xx answers: %d\n", bad))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%g latency: %.2f ms\n", p, latency:percentile(p) / 1000))
  end
end
