-- Optional Argo CD health check for apps/Deployment
-- (argocd-cm key resource.customizations.health.apps_Deployment; see docs/gitops.md).
--
-- Argo CD's built-in check reports every paused Deployment as Suspended. ramp keeps the
-- Deployment it delivers paused between rollouts, so without this override an Application
-- whose rollout is done shows Suspended instead of Healthy. This script is the built-in check
-- except for one case: a paused Deployment whose replicas all run its current template and
-- are available is Healthy. A paused Deployment with replicas still on an older template (a
-- commit ramp has not promoted, or one it rolled back) stays Suspended.
-- Installing it changes the health of every Deployment Argo CD manages, in that one case.
hs = {}

local spec = obj.spec or {}
local status = obj.status or {}
local generation = 0
if obj.metadata ~= nil and obj.metadata.generation ~= nil then
  generation = obj.metadata.generation
end
local observed = status.observedGeneration or 0
local replicas = spec.replicas
local updated = status.updatedReplicas or 0
local total = status.replicas or 0
local available = status.availableReplicas or 0

local function progressDeadlineExceeded()
  if status.conditions == nil then
    return false
  end
  for _, c in ipairs(status.conditions) do
    if c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded" then
      return true
    end
  end
  return false
end

if spec.paused == true then
  if observed >= generation and (replicas == nil or updated >= replicas) and total <= updated and available >= updated then
    hs.status = "Healthy"
    hs.message = "Deployment is paused with all " .. updated .. " replicas on its current template"
  else
    hs.status = "Suspended"
    hs.message = "Deployment is paused: " .. updated .. " replicas on its current template"
  end
  return hs
end

if observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for rollout to finish: observed deployment generation less than desired generation"
  return hs
end
if progressDeadlineExceeded() then
  hs.status = "Degraded"
  hs.message = "Deployment \"" .. obj.metadata.name .. "\" exceeded its progress deadline"
  return hs
end
if replicas ~= nil and updated < replicas then
  hs.status = "Progressing"
  hs.message = "Waiting for rollout to finish: " .. updated .. " out of " .. replicas .. " new replicas have been updated..."
  return hs
end
if total > updated then
  hs.status = "Progressing"
  hs.message = "Waiting for rollout to finish: " .. (total - updated) .. " old replicas are pending termination..."
  return hs
end
if available < updated then
  hs.status = "Progressing"
  hs.message = "Waiting for rollout to finish: " .. available .. " of " .. updated .. " updated replicas are available..."
  return hs
end
hs.status = "Healthy"
hs.message = ""
return hs
