-- wrk script: sends DEPTH pipelined GETs of PATH per write (default 16 × /plaintext).
-- Usage: wrk -s scripts/pipeline.lua URL -- [DEPTH] [PATH]
init = function(args)
  local depth = tonumber(args[1]) or 16
  local path = args[2] or "/plaintext"
  local batch = {}
  for i = 1, depth do
    batch[i] = wrk.format(nil, path)
  end
  request_batch = table.concat(batch)
end

request = function()
  return request_batch
end
