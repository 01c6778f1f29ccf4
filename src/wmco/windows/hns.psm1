# hns.psm1: the Host Networking Service calls the Windows Machine Config Operator (wmco) makes.
#
# Shipped by the operator and written to C:\Temp\hns.psm1 on ovn-hybrid nodes; imported with
#   Import-Module -DisableNameChecking 'C:\Temp\hns.psm1'
# (Attach is not an approved PowerShell verb). Windows PowerShell 5.1.
#
# HNS speaks JSON over the HNSCall entry point of vmcompute.dll, the same interface the
# microsoft/SDN hns.psm1 uses: HNSCall(method, path, request, out response), where the response
# is {"Success": bool, "Error": "...", "Output": {...}}. Invoke-HNSRequest turns an Error into
# Write-Error (terminating under $ErrorActionPreference = 'Stop') and returns the Output.
#
# Exported: New-HNSEndpoint, Attach-HNSHostEndpoint, Invoke-HNSRequest (every definition below;
# a module without Export-ModuleMember exports all of them).

function Invoke-HNSRequest
{
    param
    (
        [ValidateSet('GET', 'POST', 'DELETE')]
        [parameter(Mandatory = $true)] [string] $Method,
        [ValidateSet('networks', 'endpoints', 'activities', 'policylists', 'endpointstats', 'plugins')]
        [parameter(Mandatory = $true)] [string] $Type,
        [parameter(Mandatory = $false)] [string] $Action = '',
        [parameter(Mandatory = $false)] [string] $Data = '',
        [parameter(Mandatory = $false)] [Guid] $Id = [Guid]::Empty
    )

    if (-not ('WmcoHns.NativeMethods' -as [type]))
    {
        Add-Type -Namespace WmcoHns -Name NativeMethods -MemberDefinition @'
[DllImport("vmcompute.dll")]
public static extern void HNSCall(
    [MarshalAs(UnmanagedType.LPWStr)] string method,
    [MarshalAs(UnmanagedType.LPWStr)] string path,
    [MarshalAs(UnmanagedType.LPWStr)] string request,
    [MarshalAs(UnmanagedType.LPWStr)] out string response);
'@
    }

    $path = "/$Type"
    if ($Id -ne [Guid]::Empty)
    {
        $path += "/$Id"
    }
    if ($Action)
    {
        $path += "/$Action"
    }

    $response = ''
    [WmcoHns.NativeMethods]::HNSCall($Method, $path, $Data, [ref] $response)
    if (-not $response)
    {
        Write-Error "HNS $Method $path returned no response"
        return
    }

    $reply = ConvertFrom-Json -InputObject $response
    if ($reply.Error)
    {
        Write-Error $reply.Error
        return
    }
    return $reply.Output
}

function New-HNSEndpoint
{
    param
    (
        [parameter(Mandatory = $true)] [Guid] $NetworkId,
        [parameter(Mandatory = $false)] [string] $Name = '',
        [parameter(Mandatory = $false)] [string] $IPAddress = '',
        [parameter(Mandatory = $false)] [string] $Gateway = '',
        [parameter(Mandatory = $false)] [string] $MacAddress = '',
        [parameter(Mandatory = $false)] [switch] $EnableOutboundNat
    )

    $endpoint = @{
        VirtualNetwork = $NetworkId.ToString()
        Policies       = @()
    }
    if ($Name)
    {
        $endpoint.Name = $Name
    }
    if ($IPAddress)
    {
        $endpoint.IPAddress = $IPAddress
    }
    if ($Gateway)
    {
        $endpoint.GatewayAddress = $Gateway
    }
    if ($MacAddress)
    {
        $endpoint.MacAddress = $MacAddress
    }
    if ($EnableOutboundNat)
    {
        $endpoint.Policies += @{ Type = 'OutBoundNAT' }
    }

    $data = ConvertTo-Json -InputObject $endpoint -Depth 10
    return Invoke-HNSRequest -Method POST -Type endpoints -Data $data
}

function Attach-HNSHostEndpoint
{
    param
    (
        [parameter(Mandatory = $true)] [Guid] $EndpointID,
        [parameter(Mandatory = $true)] [int] $CompartmentID
    )

    $request = @{
        SystemType    = 'Host'
        CompartmentId = $CompartmentID
    }
    $data = ConvertTo-Json -InputObject $request
    return Invoke-HNSRequest -Method POST -Type endpoints -Id $EndpointID -Action attach -Data $data
}
