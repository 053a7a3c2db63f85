-- Health of a RollbackVerification (gitops.proompteng.ai/v1alpha1) for Argo CD.
-- Lets a RollbackVerification be a PostSync hook: Argo CD waits while it is Progressing, succeeds
-- the hook when it is Healthy and fails the sync when it is Degraded.
--   no status / no phase / Pending / Running -> Progressing
--   Succeeded                                -> Healthy
--   Failed                                   -> Degraded, "<reason>: <message>"
-- Registered in argocd-cm under
-- resource.customizations.health.gitops.proompteng.ai_RollbackVerification
-- (deploy/argocd/argocd-cm-health-snippet.yaml carries this same script; a test keeps them equal).
local hs = {}
local status = obj.status
if status == nil or status.phase == nil or status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for rollback-verifier to start the verification"
  return hs
end

local phase = status.phase
local message = status.message
if message == "" then
  message = nil
end

if phase == "Pending" or phase == "Running" then
  hs.status = "Progressing"
  hs.message = message or ("Verification " .. phase)
  return hs
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = message or "Rollback verified"
  return hs
end

if phase == "Failed" then
  hs.status = "Degraded"
  local reason = status.reason
  if reason == nil or reason == "" then
    hs.message = message or "Rollback verification failed"
  elseif message ~= nil then
    hs.message = reason .. ": " .. message
  else
    hs.message = reason
  end
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown RollbackVerification phase " .. tostring(phase)
return hs
