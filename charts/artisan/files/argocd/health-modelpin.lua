-- Shared helpers (each Argo CD health script must stand alone, so they are repeated per kind).
local function condition(obj, type_)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil then
    return c.reason
  end
  return fallback
end

-- The status describes an older spec: the operator has not caught up yet.
local function stale(obj)
  if obj.status == nil then
    return "Waiting for the operator to report status"
  end
  local generation = obj.metadata and obj.metadata.generation
  local observed = obj.status.observedGeneration
  if generation ~= nil and (observed == nil or observed < generation) then
    return "Waiting for the operator to observe generation " .. tostring(generation)
  end
  return nil
end

-- ModelPin: Degraded → Degraded, Ready → Healthy (a downshift is reported in the message).
local hs = {}
local waiting = stale(obj)
local phase = obj.status and obj.status.phase
local stalled = condition(obj, "Stalled")
local ready = condition(obj, "Ready")
local downshifted = condition(obj, "Downshifted")
if waiting ~= nil then
  hs.status = "Progressing"
  hs.message = waiting
elseif is_true(stalled) then
  hs.status = "Degraded"
  hs.message = text(stalled, "Stalled")
elseif phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = text(ready, "Degraded")
elseif is_true(ready) and phase == "Ready" then
  hs.status = "Healthy"
  if is_true(downshifted) then
    hs.message = "Serving downshifted: " .. text(downshifted, "Downshifted")
  else
    hs.message = text(ready, "Ready")
  end
else
  hs.status = "Progressing"
  hs.message = text(condition(obj, "Reconciling"), phase or "Pending")
end
return hs
