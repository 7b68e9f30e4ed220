// Evaluates IAM requests against identity policies with @cloud-copilot/iam-simulate (AWS's
// authorization data, condition operators and missing-key semantics). One process per batch.
//
// stdin:  {"principal": "arn:aws:iam::<account>:user/<name>",
//          "policies": {"<name>": <policy document>, ...},
//          "requests": [{"action": "s3:ListBucket", "resource": "<arn or *>",
//                        "context": {"s3:prefix": "..."}}, ...]}
// stdout: one JSON array, one {"decision": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" |
//         "Error", "errors": ...} per request, in order.
import { runSimulation } from '@cloud-copilot/iam-simulate'

async function readStdin() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

async function decide(batch, request) {
  const account = batch.principal.split(':')[4]
  const response = await runSimulation(
    {
      identityPolicies: Object.entries(batch.policies).map(([name, policy]) => ({ name, policy })),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      request: {
        principal: batch.principal,
        action: request.action,
        resource: { resource: request.resource, accountId: account },
        contextVariables: request.context ?? {},
      },
    },
    {},
  )
  if (response.resultType === 'error') return { decision: 'Error', errors: response.errors }
  return { decision: response.overallResult }
}

const batch = await readStdin()
const decisions = []
for (const request of batch.requests) decisions.push(await decide(batch, request))
process.stdout.write(JSON.stringify(decisions))
