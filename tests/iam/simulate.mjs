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

// aws:username: present (the user's friendly name) only when the principal is an IAM user.
function userName(principal) {
  const resource = principal.split(':')[5] ?? ''
  return resource.startsWith('user/') ? { 'aws:username': resource.split('/').pop() } : {}
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
        // Keys AWS puts in every request's context (policy variables such as ${aws:PrincipalArn}
        // resolve from them); the request's own keys come on top.
        contextVariables: {
          'aws:PrincipalArn': batch.principal,
          'aws:PrincipalAccount': account,
          ...userName(batch.principal),
          ...(request.context ?? {}),
        },
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
